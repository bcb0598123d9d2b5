"""The owner's settings form and the shop policy, both ways. Pure.

The form shows what an owner thinks in (opening hours as "09:00-18:00", SLA windows as
"2 hours"); the policy is what intake validates. A change is laid over the current policy
so every key the form does not show is kept as it was, and intake's errors, which name
policy keys, are put back next to the form field they came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DAYS = (
    ("mon", "Monday"),
    ("tue", "Tuesday"),
    ("wed", "Wednesday"),
    ("thu", "Thursday"),
    ("fri", "Friday"),
    ("sat", "Saturday"),
    ("sun", "Sunday"),
)
SLA_KEYS = (
    ("ack_sla", "Acknowledge a case within"),
    ("ack_sla_critical", "Acknowledge a critical case within"),
    ("resolve_sla", "Resolve a case within"),
)
CONTACT_KEYS = (
    ("name", "Shop name"),
    ("phone", "Shop phone"),
    ("email", "Shop email"),
    ("postal_address", "Postal address"),
    ("review_url", "Review link (e.g. your Google review page)"),
)
ROLES = (("advisor", "Service advisor"), ("service_manager", "Service manager"), ("owner", "Owner"))
UNITS = {"M": "minutes", "H": "hours", "D": "days"}
_SIMPLE = re.compile(r"P(?:T(\d+)([MH])|(\d+)D)")
_RANGE = re.compile(r"\s*(\d{1,2}:\d{2})\s*[-\u2013]\s*(\d{1,2}:\d{2})\s*")
STAFF_FIELDS = ("id", "name", "role", "email", "phone")


def hours_text(intervals: list[list[str]]) -> str:
    return ", ".join(f"{a}-{b}" for a, b in intervals)


def duration_parts(value: str) -> tuple[str, str]:
    """("2", "hours") for PT2H; anything else is kept as written (unit "iso")."""
    found = _SIMPLE.fullmatch(value)
    if found is None:
        return value, "iso"
    if found.group(3):
        return found.group(3), "days"
    return found.group(1), UNITS[found.group(2)]


def duration_value(amount: str, unit: str) -> str | None:
    amount = amount.strip()
    if unit == "iso":
        return amount or None
    if not (amount.isascii() and amount.isdigit()) or int(amount) == 0:
        return None
    if unit == "days":
        return f"P{int(amount)}D"
    if unit == "hours":
        return f"PT{int(amount)}H"
    if unit == "minutes":
        return f"PT{int(amount)}M"
    return None


@dataclass
class SettingsChange:
    """A form read against the current policy: the policy to save, or what is wrong."""

    policy: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    #: policy staff index -> the form row it came from ("0", "1", ... or "new")
    staff_rows: list[str] = field(default_factory=list)

    def error_for(self, key: str, message: str) -> None:
        """Put intake's error on a policy key next to its form field."""
        parts = key.split(".")
        if parts[0] == "business_hours" and len(parts) >= 2:
            name = f"business_hours.{parts[1]}"
        elif parts[0] == "holidays":
            name = "holidays"
        elif parts[0] == "staff" and len(parts) >= 2 and parts[1].isdigit():
            index = int(parts[1])
            row = self.staff_rows[index] if index < len(self.staff_rows) else "new"
            name = f"staff.{row}.{parts[2]}" if len(parts) >= 3 else f"staff.{row}.id"
        elif parts[0] in ("contact", "channels") and len(parts) >= 2:
            name = f"{parts[0]}.{parts[1]}"
        elif parts[0] in {k for k, _ in SLA_KEYS}:
            name = parts[0]
        else:
            name = "policy"
        self.errors.setdefault(name, message)


def staff_row_keys(form: Mapping[str, str]) -> list[str]:
    """The staff rows a form holds ("0", "1", ..., then "new"), in the order shown."""
    return sorted(
        {k.split(".")[1] for k in form if k.startswith("staff.") and k.count(".") == 2},
        key=lambda r: (r == "new", int(r) if r.isdigit() else 0),
    )


def read_form(
    form: Mapping[str, str], current: Mapping[str, Any], editor_id: str
) -> SettingsChange:
    """The policy the owner's form asks for, over ``current``; errors the form can tell
    without asking intake (a malformed range, the owner locking themselves out)."""
    policy: dict[str, Any] = {k: v for k, v in current.items()}
    change = SettingsChange(policy)
    errors = change.errors

    contact = dict(current.get("contact") or {})
    for key, _ in CONTACT_KEYS:
        value = form.get(f"contact.{key}", "").strip()
        contact[key] = value or None
    policy["contact"] = contact

    hours: dict[str, list[list[str]]] = {}
    for day, words in DAYS:
        text = form.get(f"business_hours.{day}", "").strip()
        if not text or text.lower() == "closed":
            hours[day] = []
            continue
        ranges = []
        for piece in text.split(","):
            found = _RANGE.fullmatch(piece)
            if found is None:
                errors[f"business_hours.{day}"] = (
                    f"{words}: write opening hours as 09:00-18:00 (two ranges: "
                    "09:00-12:00, 13:00-18:00), or leave it empty when closed."
                )
                break
            ranges.append([found.group(1).zfill(5), found.group(2).zfill(5)])
        hours[day] = ranges
    policy["business_hours"] = hours

    holidays = [
        line.strip() for line in re.split(r"[\n,]", form.get("holidays", "")) if line.strip()
    ]
    policy["holidays"] = holidays

    for key, words in SLA_KEYS:
        window = duration_value(form.get(f"{key}.amount", ""), form.get(f"{key}.unit", ""))
        if window is None:
            errors[key] = f"{words}: a whole number of minutes, hours or days, more than 0."
        else:
            policy[key] = window

    channels = dict(current.get("channels") or {})
    for channel in ("sms", "email"):
        channels[channel] = "on" if form.get(f"channels.{channel}") == "on" else "off"
    policy["channels"] = channels

    staff: list[dict[str, Any]] = []
    for row in staff_row_keys(form):
        member = {f: form.get(f"staff.{row}.{f}", "").strip() for f in STAFF_FIELDS}
        if row == "new" and not any(member[f] for f in ("id", "name", "email")):
            continue
        removed = form.get(f"staff.{row}.remove") == "on"
        original = form.get(f"staff.{row}.was", "")
        if original == editor_id and (removed or member["role"] != "owner"):
            errors[f"staff.{row}.role"] = (
                "You cannot remove yourself or give up the owner role here:"
                " another owner can do that."
            )
            member["role"] = "owner"
            removed = False
        if original == editor_id and member["id"] != editor_id:
            errors[f"staff.{row}.id"] = (
                "You cannot change your own staff id here: you sign in as it. Another owner can."
            )
            member["id"] = editor_id
        if removed:
            continue
        staff.append(
            {f: (member[f] or None) if f in ("email", "phone") else member[f] for f in STAFF_FIELDS}
        )
        change.staff_rows.append(row)
    policy["staff"] = staff
    if not any(m["role"] == "owner" for m in staff):
        errors.setdefault("staff.new.role", "The shop needs at least one owner.")
    return change


def suppressed(contact: Mapping[str, Any]) -> list[str]:
    """What the shop's messages leave out while the contact details are incomplete."""
    missing = []
    if not contact.get("review_url"):
        missing.append("Review requests are not sent: there is no review link.")
    if not contact.get("postal_address"):
        missing.append(
            "Commercial email (win-back, thank-you and reminder emails) is not sent:"
            " there is no postal address (the CAN-SPAM Act requires one in every such email)."
        )
    return missing
