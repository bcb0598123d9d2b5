"""The JSON each followup endpoint answers is what its declared response model says."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from regulars_followup.domain.tasks import at_risk_script, call_script
from regulars_followup.entrypoints import api
from regulars_runtime.http import Problem, after_cursor, page_cursor

NOW = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)


def task_row(**more: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "customer_id": "c-1",
        "repair_order_id": "ro-1",
        "assignee": "sam",
        "status": "scheduled",
        "status_reason": None,
        "due_at": NOW,
        "attempts": 0,
        "script": call_script({"work_performed": "brakes", "asset_id": "2019 CR-V"}, "Main St"),
        "customer_name": "Dana Reyes",
        "customer_phone": "+15125550142",
        "created_at": NOW,
        "updated_at": NOW,
        **more,
    }


def as_json(body: object) -> object:
    return orjson.loads(orjson.dumps(body))


def test_a_page_of_follow_ups_fits_its_model() -> None:
    body = as_json({"items": [api._task(task_row())], "next_cursor": "abc"})
    page = api.FollowUpPage.model_validate(body)
    assert page.items[0].script.customer == "Dana Reyes"
    assert page.items[0].script.lines[0].startswith("Hi Dana")


def test_an_at_risk_call_fits_the_same_model() -> None:
    script = at_risk_script(
        {"repair_order_id": "ro-1", "work_performed": "brakes", "asset_id": "2019 CR-V"},
        ["missed_follow_up", "a_reason_added_later"],
        "Main St",
        0.7,
    )
    row = task_row(repair_order_id=f"at_risk:{uuid.uuid4()}", script=script)
    page = api.FollowUpPage.model_validate(
        as_json({"items": [api._task(row)], "next_cursor": None})
    )
    call = page.items[0].script
    assert call.lines[0] == "Hi Dana, this is {advisor} from Main St."
    assert (
        call.lines[1]
        == "I'm calling to check in after your last visit for brakes on your 2019 CR-V."
    )
    assert call.model_dump()["why"] == [
        "we could not reach them after a visit",
        "a reason added later",
    ]


def test_a_recorded_attempt_fits_its_model() -> None:
    task = api._task(task_row(attempts=1, status="completed", status_reason="reached"))
    history = {"number": 1, "outcome": "reached", "satisfied": True, "score": 9}
    task["history"] = [{**history, "notes": None, "by_staff": "sam", "at": NOW.isoformat()}]
    recorded = api.AttemptRecordedOut.model_validate(as_json({"attempt": 1, "task": task}))
    assert recorded.task.history[0].satisfied is True


def test_a_page_of_messages_fits_its_model_and_pages_on() -> None:
    row = {
        "id": uuid.uuid4(),
        "customer_id": "c-1",
        "channel": "sms",
        "kind": "survey",
        "purpose": "survey:s-1",
        "status": "held",
        "reason": "quiet hours",
        "send_at": NOW,
        "sent_at": None,
        "repair_order_id": None,
        "created_at": NOW,
    }
    page = api.MessagePage.model_validate(
        as_json({"items": [api._message(row)], "next_cursor": None})
    )
    assert page.items[0].status == "held"
    cursor = page_cursor(NOW, row["id"])  # type: ignore[arg-type]
    assert after_cursor(cursor) == (NOW, row["id"])


def test_due_before_is_a_moment_with_its_offset() -> None:
    end_of_day = api._moment("2026-12-02T23:59:59-05:00", "due_before")
    assert end_of_day == datetime(2026, 12, 3, 4, 59, 59, tzinfo=UTC)
    assert api._moment("2026-12-03T04:59:59Z", "due_before") == end_of_day
    assert api._moment(None, "due_before") is None
    for bad in ("tomorrow", "2026-12-02", "2026-12-02T23:59:59", "0001-01-01T00:00:00+05:00"):
        with pytest.raises(Problem) as refused:
            api._moment(bad, "due_before")
        assert refused.value.status == 422
        assert [e["field"] for e in refused.value.errors] == ["due_before"], bad
