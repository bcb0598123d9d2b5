from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from regulars_followup.domain.tasks import FIRST_NAME, addressed, call_script, plan_follow_up
from regulars_shop.calendar import BusinessCalendar

NY = ZoneInfo("America/New_York")
CAL = BusinessCalendar.from_policy(
    "America/New_York",
    {d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat")} | {"sun": []},
    ["2026-11-26"],
)


def test_due_is_first_business_slot_after_the_delay() -> None:
    done = datetime(2026, 11, 20, 17, 0, tzinfo=NY)  # Friday
    plan = plan_follow_up(done, CAL, timedelta(hours=48), timedelta(hours=24), done)
    assert plan.due_at == datetime(2026, 11, 23, 9, 0, tzinfo=NY)  # Sunday closed -> Monday


def test_due_skips_a_holiday() -> None:
    done = datetime(2026, 11, 24, 12, 0, tzinfo=NY)  # Tuesday; +48 h = Thanksgiving
    plan = plan_follow_up(done, CAL, timedelta(hours=48), timedelta(hours=24), done)
    assert plan.due_at == datetime(2026, 11, 27, 9, 0, tzinfo=NY)


def test_historical_visit_gets_no_call() -> None:
    done = datetime(2025, 1, 6, 12, 0, tzinfo=NY)
    plan = plan_follow_up(
        done,
        CAL,
        timedelta(hours=48),
        timedelta(hours=24),
        datetime(2026, 11, 20, 12, 0, tzinfo=NY),
    )
    assert plan.due_at is None and "historical" in plan.reason


def test_visit_whose_window_is_still_open_is_scheduled_even_if_due_passed() -> None:
    done = datetime(2026, 11, 16, 12, 0, tzinfo=NY)  # due Wed 18th 12:00, missed after Thu 12:00
    now = datetime(2026, 11, 19, 11, 0, tzinfo=NY)
    assert (
        plan_follow_up(done, CAL, timedelta(hours=48), timedelta(hours=24), now).due_at is not None
    )


def test_call_script_names_customer_unit_and_work() -> None:
    script = addressed(
        call_script({"asset_id": "2019 Honda CR-V", "work_performed": "front brakes"}, "Main St"),
        "Dana Whitfield",
    )
    assert script["customer"] == "Dana Whitfield"
    assert script["lines"][0] == "Hi Dana, this is {advisor} from Main St."
    text = " ".join(script["lines"])
    assert "front brakes" in text and "2019 Honda CR-V" in text
    anonymous = addressed(call_script({}), None)
    assert anonymous["customer"] == "the customer"
    assert anonymous["lines"][0].startswith("Hi there,")
    assert "the recent service" in " ".join(anonymous["lines"])


def test_a_script_is_addressed_by_the_name_the_directory_holds_when_read() -> None:
    stored = call_script({"work_performed": "an oil change"})
    assert "Dana" not in str(stored) and FIRST_NAME in stored["lines"][0]
    assert addressed(stored, "WHITFIELD, DANA")["lines"][0].startswith("Hi Dana,")
    renamed = addressed(stored, "Dana Moreno")
    assert renamed["customer"] == "Dana Moreno" and renamed["lines"][1:] == stored["lines"][1:]
    # a line the shop system filled with braces is text, not a template
    odd = addressed(call_script({"work_performed": "{advisor} {0} {customer_first_name"}), "Al")
    assert "{advisor} {0} {customer_first_name" in odd["lines"][1]
    # a script stored with its name before names were filled in on reading keeps it
    legacy = {"customer": "Lee Park", "lines": ["Hi Lee, this is {advisor}."]}
    assert addressed(legacy, None) == legacy
    assert addressed(legacy, "Lee Moreno")["customer"] == "Lee Moreno"


# --- attempts --------------------------------------------------------------------------

import pytest  # noqa: E402
from regulars_followup.domain.attempts import (  # noqa: E402
    Attempt,
    AttemptOutcome,
    TaskFinished,
    record_attempt,
)

AT = datetime(2026, 11, 23, 10, 0, tzinfo=NY)


def test_reached_completes_the_task() -> None:
    result = record_attempt("scheduled", 0, 3, Attempt(AttemptOutcome.REACHED, AT, satisfied=False))
    assert (result.number, result.status) == (1, "completed")


def test_reached_needs_satisfied() -> None:
    with pytest.raises(ValueError, match="satisfied"):
        record_attempt("scheduled", 0, 3, Attempt(AttemptOutcome.REACHED, AT))


@pytest.mark.parametrize(
    "outcome", [AttemptOutcome.NO_ANSWER, AttemptOutcome.VOICEMAIL, AttemptOutcome.WRONG_NUMBER]
)
def test_third_unanswered_attempt_misses_the_task(outcome: AttemptOutcome) -> None:
    assert record_attempt("scheduled", 0, 3, Attempt(outcome, AT)).status == "scheduled"
    assert record_attempt("scheduled", 1, 3, Attempt(outcome, AT)).status == "scheduled"
    third = record_attempt("scheduled", 2, 3, Attempt(outcome, AT))
    assert (third.number, third.status, third.missed_reason) == (3, "missed", "max_attempts")


def test_max_attempts_follows_the_policy() -> None:
    assert (
        record_attempt("scheduled", 0, 1, Attempt(AttemptOutcome.NO_ANSWER, AT)).status == "missed"
    )
    assert (
        record_attempt("scheduled", 2, 5, Attempt(AttemptOutcome.NO_ANSWER, AT)).status
        == "scheduled"
    )


@pytest.mark.parametrize("status", ["completed", "missed", "cancelled"])
def test_a_finished_task_takes_no_attempt(status: str) -> None:
    with pytest.raises(TaskFinished):
        record_attempt(status, 1, 3, Attempt(AttemptOutcome.NO_ANSWER, AT))
