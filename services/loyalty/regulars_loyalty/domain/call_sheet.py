"""A follow-up call as the advisor reads it on the console. Pure.

followup stores a call's script with ``{advisor}`` where the caller's name goes (it does
not know who will pick up the phone) and fills in the customer's name itself. The console
fills in the rest, and takes out any placeholder it does not know: a person must never
read "{advisor}" to a customer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

PLACEHOLDER = re.compile(r"\{[a-zA-Z_][a-zA-Z0-9_]*\}")


def staff_name(names: Mapping[str, str], staff_id: str | None) -> str | None:
    """A staff member's name from the staff list, else their id as the shop system sent it."""
    if not staff_id:
        return None
    return names.get(staff_id) or staff_id


def first_name(full_name: str | None) -> str:
    parts = (full_name or "").split()
    return parts[0] if parts else "there"


def spoken(lines: Iterable[str], *, advisor: str, customer: str | None) -> list[str]:
    """The script's lines with every placeholder filled or, if unknown, left out."""
    known = {"{advisor}": advisor, "{customer_first_name}": first_name(customer)}

    def unknown_out(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0) in known else ""

    def fill(match: re.Match[str]) -> str:
        return known.get(match.group(0), "")

    out = []
    for line in lines:
        text = str(line)
        # unknown ones out first, until none is left (taking one out can join its
        # neighbours into another); then the known ones filled, once, never scanned again
        while (fewer := PLACEHOLDER.sub(unknown_out, text)) != text:
            text = fewer
        text = PLACEHOLDER.sub(fill, text)
        out.append(re.sub(r"\s{2,}", " ", text).replace(" ,", ",").replace(" .", ".").strip())
    return out


def call_sheet(task: Mapping[str, Any], names: Mapping[str, str], caller: str) -> dict[str, Any]:
    """What the console shows of one call: who calls (the assignee by name, else the
    signed-in person), what they say, what was done."""
    script = task.get("script") or {}
    advisor = staff_name(names, task.get("assignee")) or caller
    return {
        "advisor": advisor,
        "lines": spoken(
            script.get("lines") or [], advisor=advisor, customer=script.get("customer")
        ),
        "why": [str(w) for w in script.get("why") or []],
        "work_performed": script.get("work_performed"),
        "vehicle_or_unit": script.get("vehicle_or_unit"),
    }
