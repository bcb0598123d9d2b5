"""loyalty's handlers through its bus, at the unit-of-work seam: the timeline, each
customer's stage and risk, and the events they emit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from regulars_events.base import Event
from regulars_events.catalogue import (
    CustomerUpserted,
    FeedbackReceived,
    FollowUpMissed,
    NegativeFeedback,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    ReferralReported,
    ReviewRequested,
    ServiceCompleted,
    ServiceVoided,
    ShopApiKeyIssued,
    ShopPolicyChanged,
)
from regulars_events.envelope import Envelope
from regulars_loyalty import bootstrap, handlers
from regulars_loyalty.domain.stages import months_after
from regulars_runtime.testing import FakeClock
from regulars_shop.policy import Policy

from services.loyalty.tests.fakes import Loyalty

SHOP = str(uuid.UUID("00000000-0000-4000-8000-00000000cafe"))
NOW = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)
STAGE_CHANGED = "regulars.lifecycle.stage_changed.v1"
AT_RISK = "regulars.lifecycle.customer_at_risk.v1"


def envelope(event: Event, at: datetime = NOW) -> Envelope:
    return Envelope.wrap(event, source="intake", shop_id=SHOP, time=at)


def policy(**changes: object) -> Envelope:
    body = {**Policy.defaults().model_dump(mode="json"), **changes}
    return Envelope.wrap(
        ShopPolicyChanged(version=1, policy=body), source="intake", shop_id=SHOP, time=NOW
    )


def visit(ro: str, customer: str, days_ago: float, **more: object) -> Envelope:
    at = NOW - timedelta(days=days_ago)
    return envelope(
        ServiceCompleted(repair_order_id=ro, customer_id=customer, completed_at=at, **more), at
    )


async def loyalty_with_policy(**changes: object) -> tuple[Loyalty, Any]:
    loyalty = Loyalty(FakeClock(NOW))
    bus = bootstrap.bus(loyalty.deps, unit_of_work=loyalty.unit_of_work)
    await bus.handle_event(policy(**changes), None)
    return loyalty, bus


def changes(loyalty: Loyalty, customer: str) -> list[tuple[str | None, str]]:
    return [
        (e.data["from_stage"], e.data["to_stage"])
        for e in loyalty.emitted(STAGE_CHANGED)
        if e.subject == customer
    ]


async def test_every_event_about_a_customer_goes_on_their_timeline_once() -> None:
    loyalty, bus = await loyalty_with_policy()
    events = [
        envelope(CustomerUpserted(customer_id="c-1", name="Dana Whitfield")),
        visit("ro-1", "c-1", 1),
        visit("ro-2", "c-2", 1),
    ]
    for e in events:
        await bus.handle_event(e, None)
    assert loyalty.timeline.added == [e.id for e in events]
    assert loyalty.timeline.of(SHOP, "c-1") == [
        "regulars.service.completed.v1",
        "regulars.customer.upserted.v1",
    ]


async def test_shop_events_go_to_the_shop_book_not_the_timeline() -> None:
    loyalty, bus = await loyalty_with_policy()
    key = Envelope.wrap(
        ShopApiKeyIssued(key_id="0123456789abcdef", secret_sha256="ab" * 32),
        source="intake",
        shop_id=SHOP,
    )
    await bus.handle_event(key, None)
    assert len(loyalty.shops.applied) == 2
    assert loyalty.timeline.added == []
    assert loyalty.standings.saved == {}


async def test_a_history_import_lands_each_customer_in_their_stage_at_once() -> None:
    loyalty, bus = await loyalty_with_policy()
    history = [
        envelope(CustomerUpserted(customer_id="new", name="Never Came")),
        visit("a1", "once", 20),
        visit("b1", "twice", 400),
        visit("b2", "twice", 30),
        visit("c1", "loyal", 600),
        visit("c2", "loyal", 300),
        visit("c3", "loyal", 10),
        visit("d1", "lapsed", 500),
        visit("e1", "lost", 1000),
        visit("e2", "lost", 800),
    ]
    await bus.handle_events(history, None)
    stages = {k[1]: s.stage for k, s in loyalty.standings.saved.items()}
    assert stages == {
        "new": "prospect",
        "once": "customer",
        "twice": "repeat",
        "loyal": "loyal",
        "lapsed": "lapsed",
        "lost": "lost",
    }
    # one change each, straight to where their history puts them
    assert changes(loyalty, "loyal") == [(None, "loyal")]
    assert changes(loyalty, "lost") == [(None, "lost")]
    lapsed = loyalty.standings.of(SHOP, "lapsed")
    assert lapsed.stage_since == NOW - timedelta(days=500) + timedelta(days=365)


async def test_one_change_per_real_change_and_none_for_a_repeat_of_the_same_stage() -> None:
    loyalty, bus = await loyalty_with_policy()
    for e in [visit("r1", "c", 100), visit("r2", "c", 50), visit("r3", "c", 5)]:
        await bus.handle_event(e, None)
    await bus.handle_event(envelope(CustomerUpserted(customer_id="c", name="C")), None)
    assert changes(loyalty, "c") == [
        (None, "customer"),
        ("customer", "repeat"),
        ("repeat", "loyal"),
    ]
    reasons = [e.data["reason"] for e in loyalty.emitted(STAGE_CHANGED)]
    assert reasons[-1] == "3 visits within 24 months, no open case"


async def test_a_void_takes_the_visit_back() -> None:
    loyalty, bus = await loyalty_with_policy()
    await bus.handle_events([visit("r1", "c", 100), visit("r2", "c", 5)], None)
    await bus.handle_event(envelope(ServiceVoided(repair_order_id="r2", customer_id="c")), None)
    assert changes(loyalty, "c") == [(None, "repeat"), ("repeat", "customer")]


async def test_time_passing_moves_the_stage_by_its_durable_timer() -> None:
    loyalty, bus = await loyalty_with_policy()
    await bus.handle_event(visit("r1", "c", 300), None)
    (timer,) = loyalty.timers.pending(handlers.REVIEW)
    assert timer.fire_at == NOW - timedelta(days=300) + timedelta(days=365)
    loyalty.clock.now = timer.fire_at
    await bus.handle_timer(loyalty.timers.fired(timer), None)
    assert changes(loyalty, "c") == [(None, "customer"), ("customer", "lapsed")]
    (lost,) = loyalty.timers.pending(handlers.REVIEW)
    assert lost.fire_at == NOW - timedelta(days=300) + timedelta(days=730)


async def test_a_new_visit_moves_the_timer() -> None:
    loyalty, bus = await loyalty_with_policy()
    await bus.handle_event(visit("r1", "c", 300), None)
    (first,) = loyalty.timers.pending(handlers.REVIEW)
    await bus.handle_event(visit("r2", "c", 1), None)
    assert first.key in loyalty.timers.cancelled()
    (second,) = loyalty.timers.pending(handlers.REVIEW)
    # a repeat customer now, until the first visit leaves the 18-month window
    leaves = months_after(NOW - timedelta(days=300), 18) + timedelta(microseconds=1)
    assert second.fire_at == leaves


async def test_the_shops_lapsed_after_decides() -> None:
    loyalty, bus = await loyalty_with_policy(lapsed_after="P180D", lost_after="P400D")
    await bus.handle_event(visit("r1", "c", 200), None)
    assert loyalty.standings.of(SHOP, "c").stage == "lapsed"


async def test_negative_feedback_puts_at_risk_until_its_case_is_resolved() -> None:
    loyalty, bus = await loyalty_with_policy()
    await bus.handle_events(
        [visit("r1", "c", 100), visit("r2", "c", 50), visit("r3", "c", 5)], None
    )
    negative = NegativeFeedback(
        customer_id="c", source="survey", nps=2, incident_key="ro:r3", case_id=None
    )
    opened = RecoveryCaseOpened(
        case_id="k-1",
        customer_id="c",
        severity="high",
        assignee="adv",
        escalation_level="advisor",
        ack_due_at=NOW + timedelta(hours=2),
        resolve_due_at=NOW + timedelta(days=2),
        incident_key="ro:r3",
    )
    # the case can arrive before the feedback (they travel on different topics)
    await bus.handle_event(envelope(opened), None)
    await bus.handle_event(envelope(negative), None)
    standing = loyalty.standings.of(SHOP, "c")
    assert standing.stage == "at_risk"
    (at_risk,) = loyalty.emitted(AT_RISK)
    assert at_risk.data["reasons"] == ["open_negative_feedback"]
    resolved = RecoveryCaseResolved(
        case_id="k-1", customer_id="c", outcome="refunded the part", resolved_at=NOW
    )
    await bus.handle_event(envelope(resolved), None)
    assert changes(loyalty, "c")[-2:] == [("loyal", "at_risk"), ("at_risk", "loyal")]
    assert len(loyalty.emitted(AT_RISK)) == 1


async def test_a_missed_follow_up_raises_churn_risk_and_emits_at_risk_once() -> None:
    loyalty, bus = await loyalty_with_policy(at_risk_threshold=0.25)
    await bus.handle_event(visit("r1", "c", 10), None)
    missed = FollowUpMissed(
        task_id="t-1",
        customer_id="c",
        repair_order_id="r1",
        reason="max_attempts",
        missed_at=NOW - timedelta(days=5),
    )
    await bus.handle_event(envelope(missed), None)
    await bus.handle_event(envelope(CustomerUpserted(customer_id="c", name="C")), None)
    standing = loyalty.standings.of(SHOP, "c")
    assert standing.risk is not None and standing.risk.score >= 0.3
    assert [r.code for r in standing.risk.reasons] == ["missed_follow_up"]
    (at_risk,) = loyalty.emitted(AT_RISK)
    assert at_risk.data["score"] == round(standing.risk.score, 4)
    # answering the fallback survey makes it good
    answer = FeedbackReceived(survey_id="s-1", customer_id="c", nps=8, received_at=NOW)
    await bus.handle_event(envelope(answer), None)
    assert loyalty.standings.of(SHOP, "c").stage == "customer"


async def test_a_referral_and_a_promoter_invited_to_review_make_advocates() -> None:
    loyalty, bus = await loyalty_with_policy()
    await bus.handle_events([visit("r1", "a", 10), visit("r2", "b", 10)], None)
    referral = ReferralReported(referrer_customer_id="a", referred_customer_id="n")
    await bus.handle_event(envelope(referral), None)
    assert loyalty.standings.of(SHOP, "a").stage == "advocate"
    promoter = FeedbackReceived(survey_id="s-2", customer_id="b", nps=10, received_at=NOW)
    await bus.handle_event(envelope(promoter), None)
    assert loyalty.standings.of(SHOP, "b").stage == "customer"
    await bus.handle_event(envelope(ReviewRequested(customer_id="b", survey_id="s-2")), None)
    assert loyalty.standings.of(SHOP, "b").stage == "advocate"


async def test_events_before_the_shops_policy_wait_for_it() -> None:
    loyalty = Loyalty(FakeClock(NOW))
    bus = bootstrap.bus(loyalty.deps, unit_of_work=loyalty.unit_of_work)
    try:
        await bus.handle_event(visit("r1", "c", 1), None)
    except Exception as exc:
        assert type(exc).__name__ == "Waiting"
    else:
        raise AssertionError("a visit before its shop's policy must wait")


async def test_a_refit_with_too_little_history_says_so() -> None:
    loyalty, bus = await loyalty_with_policy()
    await bus.handle_events([visit(f"r{i}", f"c{i}", i) for i in range(1, 4)], None)
    soon = [t for t in loyalty.timers.pending(handlers.REFIT) if ":soon:" in t.key]
    assert len(soon) == 1
    await bus.handle_timer(loyalty.timers.fired(soon[0]), None)
    model = loyalty.models.models[uuid.UUID(SHOP)]
    assert model.fit is None and "rules alone" in model.note and "3" in model.note


async def test_a_refit_on_enough_history_scores_each_customer_by_their_rhythm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handlers, "RESCORE_CHUNK", 30)
    loyalty, bus = await loyalty_with_policy()
    history = []
    for i in range(80):
        # regulars every ~90 days; half seen lately, half not for two years
        last = 5 + (i % 7) if i % 2 == 0 else 700 + i
        history += [visit(f"r{i}-{n}", f"c{i}", last + 90 * n) for n in range(4)]
    history += [visit(f"once{i}", f"o{i}", 30 + i) for i in range(20)]
    await bus.handle_events(history, None)
    while rescores := loyalty.timers.pending(handlers.RESCORE):  # the policy's, first
        await bus.handle_timer(loyalty.timers.fired(rescores[0]), None)
    command = handlers.RefitRiskModel(uuid.UUID(SHOP))
    uow = loyalty.unit_of_work(None)
    result = await bus.commands[type(command)](command, uow, loyalty.deps)
    await uow.flush()
    assert result.fit is not None, result.note
    # the customers are rescored a chunk at a time, each chunk a timer of its own
    chunks = 0
    while rescores := loyalty.timers.pending(handlers.RESCORE):
        await bus.handle_timer(loyalty.timers.fired(rescores[0]), None)
        chunks += 1
    assert chunks == 4  # 100 customers, 30 at a time
    assert {st.risk.model for st in loyalty.standings.saved.values() if st.risk} == {"bg_nbd"}
    recent, gone = loyalty.standings.of(SHOP, "c0"), loyalty.standings.of(SHOP, "c1")
    assert recent.risk is not None and gone.risk is not None
    assert recent.risk.model == "bg_nbd"
    assert recent.risk.p_alive is not None and gone.risk.p_alive is not None
    assert recent.risk.p_alive > gone.risk.p_alive
    assert recent.risk.expected_visits_12m is not None and recent.risk.expected_visits_12m > 1
    assert recent.risk.expected_next_visit is not None
    assert gone.risk.score > recent.risk.score


async def test_a_new_lapsed_after_reassesses_every_customer_of_the_shop() -> None:
    loyalty, bus = await loyalty_with_policy()
    await bus.handle_events([visit("r1", "c", 200), visit("r2", "d", 10)], None)
    assert loyalty.standings.of(SHOP, "c").stage == "customer"
    shorter = Envelope.wrap(
        ShopPolicyChanged(
            version=2,
            policy={
                **Policy.defaults().model_dump(mode="json"),
                "lapsed_after": "P180D",
                "lost_after": "P400D",
            },
        ),
        source="intake",
        shop_id=SHOP,
        time=NOW,
    )
    await bus.handle_event(shorter, None)
    while rescores := loyalty.timers.pending(handlers.RESCORE):
        await bus.handle_timer(loyalty.timers.fired(rescores[0]), None)
    assert loyalty.standings.of(SHOP, "c").stage == "lapsed"
    assert loyalty.standings.of(SHOP, "d").stage == "customer"
    assert changes(loyalty, "c")[-1] == ("customer", "lapsed")
