"""Model-level behaviour of the event catalogue."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from regulars_events.base import EVENT_TYPES, family_of
from regulars_events.catalogue import (
    SHOP_EVENTS,
    CustomerAtRisk,
    FeedbackReceived,
    FollowUpAttempted,
    FollowUpCompleted,
    InvoiceIssued,
    InvoicePaid,
    LifecycleStageChanged,
    NegativeFeedback,
    RecoveryCaseEscalated,
    RecoveryCaseOpened,
    ServiceCompleted,
    ShopPolicyChanged,
    StaffPraised,
)
from regulars_events.envelope import Envelope
from regulars_events.topics import FAMILIES

NOW = datetime(2025, 3, 4, 15, 30, tzinfo=UTC)

ADDED = {
    "regulars.followup.attempted.v1",
    "regulars.followup.completed.v1",
    "regulars.followup.missed.v1",
    "regulars.message.sent.v1",
    "regulars.message.failed.v1",
    "regulars.reminder.sent.v1",
    "regulars.survey.requested.v1",
    "regulars.feedback.received.v1",
    "regulars.feedback.negative.v1",
    "regulars.feedback.positive.v1",
    "regulars.recovery_case.opened.v1",
    "regulars.recovery_case.acknowledged.v1",
    "regulars.recovery_case.sla_at_risk.v1",
    "regulars.recovery_case.escalated.v1",
    "regulars.recovery_case.resolved.v1",
    "regulars.review.requested.v1",
    "regulars.referral.requested.v1",
    "regulars.staff.praised.v1",
    "regulars.lifecycle.stage_changed.v1",
    "regulars.lifecycle.customer_at_risk.v1",
}


def test_every_spec_event_is_registered() -> None:
    assert set(EVENT_TYPES) >= ADDED
    for event_type in EVENT_TYPES:
        assert family_of(event_type) in FAMILIES


def test_every_event_about_a_customer_has_a_customer_field() -> None:
    for cls in EVENT_TYPES.values():
        if cls.subject_field is not None:
            assert cls.subject_field in cls.model_fields, cls.__name__
    assert ShopPolicyChanged.subject_field is None


def completed(**extra: Any) -> dict[str, Any]:
    return {
        "task_id": "t1",
        "customer_id": "c1",
        "repair_order_id": "ro1",
        "satisfied": False,
        "score": 4,
        "completed_at": NOW.isoformat(),
        **extra,
    }


def test_unknown_fields_survive_a_round_trip() -> None:
    data = completed(loaner_car="yes", nested={"a": [1, 2]})
    event = FollowUpCompleted.model_validate(data)
    dumped = event.model_dump(mode="json")
    assert dumped["loaner_car"] == "yes"
    assert dumped["nested"] == {"a": [1, 2]}
    again = FollowUpCompleted.model_validate(dumped)
    assert again == event


def test_unknown_fields_survive_the_envelope() -> None:
    event = ServiceCompleted.model_validate(
        {
            "repair_order_id": "ro1",
            "customer_id": "c1",
            "completed_at": NOW.isoformat(),
            "bay": 3,
        }
    )
    env = Envelope.wrap(event, source="intake", shop_id="s1")
    back = Envelope.from_kafka(env.headers, env.value).event()
    assert back == event
    assert back.model_dump()["bay"] == 3
    assert env.key == b"s1:c1"


@pytest.mark.parametrize("missing", ["task_id", "customer_id", "satisfied", "completed_at"])
def test_missing_required_field_is_named(missing: str) -> None:
    data = completed()
    del data[missing]
    with pytest.raises(ValidationError) as info:
        FollowUpCompleted.model_validate(data)
    errors = info.value.errors()
    assert [e["loc"] for e in errors] == [(missing,)]
    assert errors[0]["type"] == "missing"
    assert missing in str(info.value)


def test_times_must_carry_an_offset() -> None:
    with pytest.raises(ValidationError, match="completed_at"):
        FollowUpCompleted.model_validate(completed(completed_at="2025-03-04T15:30:00"))


def test_enumerations_are_closed() -> None:
    base = {
        "task_id": "t1",
        "customer_id": "c1",
        "repair_order_id": "ro1",
        "attempt": 1,
        "at": NOW,
    }
    assert FollowUpAttempted(**base, outcome="voicemail").outcome == "voicemail"
    with pytest.raises(ValidationError, match="outcome"):
        FollowUpAttempted.model_validate({**base, "outcome": "hung_up"})
    with pytest.raises(ValidationError, match="to_stage"):
        LifecycleStageChanged.model_validate(
            {"customer_id": "c1", "to_stage": "vip", "reason": "x"}
        )
    with pytest.raises(ValidationError, match="to_level"):
        RecoveryCaseEscalated.model_validate(
            {
                "case_id": "k1",
                "customer_id": "c1",
                "from_level": "advisor",
                "to_level": "ceo",
                "assignee": "s9",
                "clock": "acknowledge",
            }
        )


@pytest.mark.parametrize(("field", "value"), [("nps", 11), ("nps", -1), ("csat", 0), ("csat", 6)])
def test_scores_are_bounded(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        FeedbackReceived.model_validate({"survey_id": "s", "customer_id": "c", field: value})


def test_negative_feedback_needs_an_incident_key() -> None:
    with pytest.raises(ValidationError, match="incident_key"):
        NegativeFeedback.model_validate({"customer_id": "c1", "source": "survey", "nps": 2})


def test_recovery_case_opened() -> None:
    case = RecoveryCaseOpened(
        case_id="k1",
        customer_id="c1",
        severity="critical",
        assignee="s1",
        escalation_level="advisor",
        ack_due_at=NOW,
        resolve_due_at=NOW,
    )
    assert case.subject() == "c1"
    assert case.family() == "recovery_case"


def test_staff_praised_names_someone() -> None:
    assert StaffPraised(customer_id="c1", staff_name="Dana", text="Great").staff_name == "Dana"
    assert StaffPraised(customer_id="c1", staff_id="s1", text="Great").staff_id == "s1"
    with pytest.raises(ValidationError, match="staff_id or staff_name"):
        StaffPraised(customer_id="c1", text="Great")


def test_customer_at_risk_needs_a_reason() -> None:
    with pytest.raises(ValidationError, match="reasons"):
        CustomerAtRisk(customer_id="c1", reasons=[])


def test_customer_at_risk_without_a_score_still_validates() -> None:
    # score, p_alive and threshold came later (additive): what loyalty sent before stays valid
    old = CustomerAtRisk.model_validate({"customer_id": "c1", "reasons": ["missed_follow_up"]})
    assert (old.score, old.p_alive, old.threshold) == (None, None, None)
    scored = CustomerAtRisk(
        customer_id="c1", reasons=["missed_follow_up"], score=0.72, p_alive=0.31, threshold=0.6
    )
    assert scored.model_dump(mode="json")["score"] == 0.72


@pytest.mark.parametrize("field", ["score", "p_alive", "threshold"])
@pytest.mark.parametrize("value", [-0.01, 1.01])
def test_customer_at_risk_numbers_are_between_zero_and_one(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        CustomerAtRisk.model_validate({"customer_id": "c1", "reasons": ["x"], field: value})


def test_an_issued_invoice_has_the_paid_ones_fields_and_constraints() -> None:
    assert SHOP_EVENTS["invoice.issued"] is InvoiceIssued
    assert InvoiceIssued.type == "regulars.invoice.issued.v1"
    issued = InvoiceIssued.model_json_schema()
    paid = InvoicePaid.model_json_schema()
    assert issued["properties"] == paid["properties"]
    assert issued["required"] == paid["required"]
    with pytest.raises(ValidationError, match="invoice_id"):
        InvoiceIssued.model_validate(
            {"invoice_id": "", "customer_id": "c1", "amount_cents": 1, "due_at": NOW.isoformat()}
        )


def test_events_are_frozen() -> None:
    event = FollowUpCompleted.model_validate(completed())
    with pytest.raises(ValidationError):
        event.satisfied = True  # type: ignore[misc]
