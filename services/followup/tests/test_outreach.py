from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from regulars_followup.domain.customers import Customer
from regulars_followup.domain.outreach import (
    Budget,
    BudgetFacts,
    Recipient,
    ShopRules,
    Spent,
    budget_since,
    decide,
    next_window,
)
from regulars_followup.domain.outreach import budget as budget_from
from regulars_shop.policy import Policy

NY = ZoneInfo("America/New_York")
CHI = ZoneInfo("America/Chicago")
SHOP = ShopRules(frozenset({"sms", "email"}), timedelta(days=7), frozenset())


def who(
    state: str | None = "NY", tz: ZoneInfo = NY, sms: bool | None = None, email: bool | None = None
) -> Recipient:
    return Recipient(state, tz, "+15555550100", "d@example.com", {"sms": sms, "email": email})


def at(y: int, m: int, d: int, h: int, mi: int = 0, tz: ZoneInfo = NY) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=tz)


def test_service_sms_goes_now_inside_the_federal_window() -> None:
    now = at(2026, 11, 23, 20, 30)
    assert decide("survey", "sms", now, who(), SHOP, Budget()).action == "send"


def test_service_sms_at_night_is_held_to_8am_local() -> None:
    d = decide("survey", "sms", at(2026, 11, 23, 21, 0), who(), SHOP, Budget())
    assert d.action == "hold" and d.at == at(2026, 11, 24, 8, 0)
    assert "quiet hours" in d.reason
    early = decide("survey", "sms", at(2026, 11, 24, 7, 59), who(), SHOP, Budget())
    assert early.at == at(2026, 11, 24, 8, 0)


def test_email_has_no_quiet_hours() -> None:
    assert (
        decide("survey", "email", at(2026, 11, 23, 23, 30), who(), SHOP, Budget()).action == "send"
    )


def test_quiet_hours_follow_the_customers_zone_not_the_shops() -> None:
    # 20:30 in New York is 19:30 in Chicago: fine for a Chicago customer.
    now = at(2026, 11, 23, 20, 30).astimezone(CHI)
    chicago = who("IL", CHI, sms=True)
    assert decide("birthday", "sms", now, chicago, SHOP, Budget()).action == "send"


@pytest.mark.parametrize(
    ("state", "opens", "closes"),
    [
        ("FL", 8, 20),
        ("OK", 8, 20),
        ("MD", 8, 20),
        ("WA", 8, 20),
        ("CT", 9, 20),
        ("KY", 10, 21),
        ("NJ", 8, 21),
        ("VA", 8, 21),
        ("UT", 8, 21),
        ("MS", 8, 20),
        ("LA", 8, 20),
        ("AL", 8, 20),
    ],
)
def test_marketing_windows_by_state_on_a_monday(state: str, opens: int, closes: int) -> None:
    monday = date(2026, 11, 23)
    customer = who(state, sms=True)
    windows = next_window(
        datetime.combine(monday, datetime.min.time(), NY), customer, "marketing", SHOP
    )
    assert windows == at(2026, 11, 23, opens)
    late = decide("win_back", "sms", at(2026, 11, 23, closes, 0), customer, SHOP, Budget())
    assert late.action == "hold" and late.at is not None and late.at.date() == date(2026, 11, 24)
    inside = decide("win_back", "sms", at(2026, 11, 23, closes - 1, 59), customer, SHOP, Budget())
    assert inside.action == "send"


def test_texas_sunday_starts_at_noon_and_rhode_island_saturday_at_ten() -> None:
    sunday_9 = at(2026, 11, 29, 9, 0)
    assert decide("birthday", "sms", sunday_9, who("TX", sms=True), SHOP, Budget()).at == at(
        2026, 11, 29, 12
    )
    saturday_9 = at(2026, 11, 28, 9, 0)
    assert decide("birthday", "sms", saturday_9, who("RI", sms=True), SHOP, Budget()).at == at(
        2026, 11, 28, 10
    )


@pytest.mark.parametrize("state", ["MS", "LA", "AL", "RI"])
def test_no_marketing_on_sunday_in_states_that_ban_it(state: str) -> None:
    sunday = at(2026, 11, 29, 12, 0)
    d = decide("win_back", "sms", sunday, who(state, sms=True), SHOP, Budget())
    assert d.action == "hold" and d.at is not None and d.at.date() == date(2026, 11, 30)


def test_service_messages_keep_the_federal_window_on_a_mississippi_sunday() -> None:
    assert decide("survey", "sms", at(2026, 11, 29, 12), who("MS"), SHOP, Budget()).action == "send"


def test_quiet_hours_across_the_dst_change() -> None:
    # 2026-11-01 02:00 EDT -> 01:00 EST. At 22:00 on Oct 31 the next window opens 08:00 EST.
    d = decide("survey", "sms", at(2026, 10, 31, 22, 0), who(), SHOP, Budget())
    assert d.at == datetime(2026, 11, 1, 8, 0, tzinfo=NY)
    assert d.at.utcoffset() == timedelta(hours=-5)
    spring = decide("survey", "sms", at(2026, 3, 7, 22, 0), who(), SHOP, Budget())
    assert spring.at == datetime(
        2026, 3, 8, 8, 0, tzinfo=NY
    ) and spring.at.utcoffset() == timedelta(hours=-4)


def test_opted_out_channel_is_suppressed_but_not_the_other() -> None:
    customer = who(sms=False)
    assert (
        decide("survey", "sms", at(2026, 11, 23, 12), customer, SHOP, Budget()).action == "suppress"
    )
    assert (
        decide("survey", "email", at(2026, 11, 23, 12), customer, SHOP, Budget()).action == "send"
    )


def test_one_confirmation_within_five_minutes_of_the_opt_out() -> None:
    now = at(2026, 11, 23, 12)
    customer = who(sms=False)
    ok = decide(
        "opt_out_confirmation",
        "sms",
        now,
        customer,
        SHOP,
        Budget(opted_out_at=now - timedelta(minutes=4)),
    )
    assert ok.action == "send"
    late = decide(
        "opt_out_confirmation",
        "sms",
        now,
        customer,
        SHOP,
        Budget(opted_out_at=now - timedelta(minutes=6)),
    )
    assert late.action == "suppress"


def test_marketing_texts_need_express_consent() -> None:
    now = at(2026, 11, 23, 12)
    assert decide("birthday", "sms", now, who(sms=None), SHOP, Budget()).action == "suppress"
    assert decide("birthday", "sms", now, who(sms=True), SHOP, Budget()).action == "send"
    assert decide("birthday", "email", now, who(email=None), SHOP, Budget()).action == "send"


def test_one_marketing_message_per_interval_but_service_is_not_limited() -> None:
    now = at(2026, 11, 23, 12)
    budget = Budget(last_marketing_at=now - timedelta(days=2))
    held = decide("win_back", "email", now, who(), SHOP, budget)
    assert held.action == "hold" and held.at == now + timedelta(days=5)
    assert decide("survey", "email", now, who(), SHOP, budget).action == "send"
    assert decide("reminder", "email", now, who(), SHOP, budget).action == "send"


def test_open_case_or_comeback_holds_back_review_asks_and_marketing_not_surveys() -> None:
    now = at(2026, 11, 23, 12)
    for budget in (Budget(open_recovery_case=True), Budget(comeback=True)):
        assert decide("review_request", "email", now, who(), SHOP, budget).action == "suppress"
        assert decide("win_back", "email", now, who(), SHOP, budget).action == "suppress"
        assert decide("survey", "email", now, who(), SHOP, budget).action == "send"
        assert decide("recovery_check_in", "email", now, who(), SHOP, budget).action == "send"


def test_florida_caps_marketing_texts_at_three_a_day() -> None:
    now = at(2026, 11, 23, 12)
    d = decide("win_back", "sms", now, who("FL", sms=True), SHOP, Budget(sms_last_24h=3))
    assert d.action == "hold" and d.at is not None and d.at >= now + timedelta(hours=24)
    assert decide("survey", "sms", now, who("FL"), SHOP, Budget(sms_last_24h=3)).action == "send"


def test_shop_channel_off_and_missing_address() -> None:
    now = at(2026, 11, 23, 12)
    no_sms = ShopRules(frozenset({"email"}), timedelta(days=7), frozenset())
    assert "turned sms off" in decide("survey", "sms", now, who(), no_sms, Budget()).reason
    nobody = Recipient("NY", NY, None, None, {})
    assert decide("survey", "email", now, nobody, SHOP, Budget()).reason == "no email address"


def _facts(*spent: Spent) -> BudgetFacts:
    return BudgetFacts(tuple(spent), False, None)


def test_a_marketing_message_decided_but_not_sent_spends_the_interval() -> None:
    # One decided to go in two hours (held for quiet hours): the next waits for a week
    # after that moment, as it would after one sent.
    now = at(2026, 11, 23, 12)
    policy = Policy.defaults()
    pending = budget_from(
        _facts(Spent(True, "email", now + timedelta(hours=2))), Customer("c"), policy, now
    )
    assert pending.last_marketing_at == now + timedelta(hours=2)
    held = decide("birthday", "email", now, who(), SHOP, pending)
    assert held.action == "hold" and held.at == now + timedelta(days=7, hours=2)
    # a service message decided does not spend the marketing interval
    service = budget_from(_facts(Spent(False, "email", now)), Customer("c"), policy, now)
    assert decide("birthday", "email", now, who(), SHOP, service).action == "send"


def test_texts_to_go_count_against_a_state_cap_as_sent_ones() -> None:
    now = at(2026, 11, 23, 12)
    policy = Policy.defaults()
    texts = _facts(
        Spent(False, "sms", now - timedelta(hours=3)),  # sent this morning
        Spent(False, "sms", now),  # due, in a dispatcher's hands
        Spent(True, "sms", now + timedelta(hours=5)),  # held for tonight
        Spent(False, "sms", now + timedelta(hours=30)),  # beyond the day: not counted
        Spent(False, "sms", now - timedelta(hours=25)),  # sent before the day: not counted
    )
    spent = budget_from(texts, Customer("c"), policy, now)
    assert spent.sms_last_24h == 3
    florida = decide("referral_request", "sms", now, who("FL", sms=True), SHOP, spent)
    assert florida.action == "hold" and florida.at is not None
    assert florida.at >= now + timedelta(hours=24) and "3 texts per 24 h in FL" in florida.reason


def test_how_far_back_a_sent_message_still_counts() -> None:
    now = at(2026, 11, 23, 12)
    assert budget_since(Policy.defaults(), now) == now - timedelta(days=7)
    daily = Policy.defaults().merged({"marketing_min_interval": "PT1H"})
    assert budget_since(daily, now) == now - timedelta(hours=24)
