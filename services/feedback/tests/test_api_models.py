"""What feedback's case list answers: each case's next deadline, by its status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from regulars_feedback.entrypoints import api

OPENED = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def case_row(status: str) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "customer_id": "c-1",
        "repair_order_id": "ro-1",
        "severity": "critical",
        "status": status,
        "assignee": "sam",
        "escalation_level": "advisor",
        "opened_at": OPENED,
        "ack_due_at": OPENED + timedelta(minutes=30),
        "resolve_due_at": OPENED + timedelta(days=2),
        "acknowledged_at": None if status == "open" else OPENED + timedelta(minutes=5),
        "acknowledged_by": None if status == "open" else "sam",
        "resolved_at": OPENED + timedelta(hours=3) if status == "resolved" else None,
        "resolved_by": "sam" if status == "resolved" else None,
        "outcome": "redid the brakes" if status == "resolved" else None,
        "history": [],
    }


def test_the_next_deadline_is_acknowledging_then_resolving_then_none() -> None:
    due = {s: api._case(case_row(s))["next_due_at"] for s in ("open", "acknowledged", "resolved")}
    assert due == {
        "open": (OPENED + timedelta(minutes=30)).isoformat(),
        "acknowledged": (OPENED + timedelta(days=2)).isoformat(),
        "resolved": None,
    }


def test_a_case_fits_its_model() -> None:
    body = orjson.loads(orjson.dumps(api._case(case_row("acknowledged"))))
    assert api.CaseOut.model_validate(body).next_due_at == body["resolve_due_at"]
