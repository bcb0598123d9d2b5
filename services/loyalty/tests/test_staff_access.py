"""Who may sign in to the console and for how long, pure: links, sessions, the request
limits, and what a signed-in person sees."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from regulars_loyalty.domain.staff_access import (
    LinkRefused,
    SignInLink,
    StaffSession,
    Viewer,
    digest,
    new_secret,
    normal_email,
    over_limit,
)

NOW = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)
TICK = timedelta(microseconds=1)


# -- links -----------------------------------------------------------------------------------


def test_a_link_is_issued_for_15_minutes_and_unused() -> None:
    link = SignInLink.issue("shop-1", "dana", NOW)
    assert link == SignInLink("shop-1", "dana", NOW, datetime(2026, 11, 20, 16, 45, tzinfo=UTC))
    assert link.used_at is None


def test_a_link_is_good_until_just_before_15_minutes() -> None:
    link = SignInLink.issue("shop-1", "dana", NOW)
    link.check(NOW)
    link.check(NOW + timedelta(minutes=15) - TICK)


@pytest.mark.parametrize("after", [timedelta(minutes=15), timedelta(minutes=15, seconds=1)])
def test_a_link_at_15_minutes_or_later_is_expired(after: timedelta) -> None:
    link = SignInLink.issue("shop-1", "dana", NOW)
    with pytest.raises(LinkRefused) as refused:
        link.check(NOW + after)
    assert str(refused.value) == (
        "This sign-in link is more than 15 minutes old. Ask for a new one."
    )


def test_a_used_link_is_refused_even_while_fresh() -> None:
    link = SignInLink("shop-1", "dana", NOW, NOW + timedelta(minutes=15), used_at=NOW)
    with pytest.raises(LinkRefused) as refused:
        link.check(NOW + timedelta(seconds=1))
    assert str(refused.value) == "This sign-in link was used already. Ask for a new one."


def test_a_used_and_expired_link_says_it_was_used() -> None:
    link = SignInLink("shop-1", "dana", NOW, NOW + timedelta(minutes=15), used_at=NOW)
    with pytest.raises(LinkRefused, match="used already"):
        link.check(NOW + timedelta(hours=1))


# -- sessions --------------------------------------------------------------------------------


def session(last_seen: datetime = NOW, ended: datetime | None = None) -> StaffSession:
    return StaffSession("shop-1", "dana", "csrf", NOW - timedelta(days=3), last_seen, ended)


def test_a_session_is_live_until_just_before_12_idle_hours() -> None:
    assert session().live(NOW) is True
    assert session().live(NOW + timedelta(hours=12) - TICK) is True


def test_a_session_idle_exactly_12_hours_is_over() -> None:
    assert session().live(NOW + timedelta(hours=12)) is False
    assert session().live(NOW + timedelta(days=2)) is False


def test_idle_time_counts_from_the_last_request_not_the_start() -> None:
    # started three days ago, seen an hour ago: live
    assert session(last_seen=NOW - timedelta(hours=1)).live(NOW) is True


def test_an_ended_session_is_over_at_once() -> None:
    assert session(ended=NOW).live(NOW) is False
    assert session(ended=NOW + timedelta(hours=1)).live(NOW) is False


def test_the_last_seen_time_is_written_at_most_once_a_minute() -> None:
    assert session().needs_touch(NOW) is False
    assert session().needs_touch(NOW + timedelta(seconds=59)) is False
    assert session().needs_touch(NOW + timedelta(minutes=1)) is True
    assert session().needs_touch(NOW + timedelta(hours=3)) is True


# -- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("for_email", "from_client", "limited"),
    [
        (0, 0, False),
        (4, 29, False),  # the 5th request for the address, the 30th from the client
        (5, 0, True),  # the 6th for the address
        (0, 30, True),  # the 31st from the client
        (5, 30, True),
    ],
)
def test_over_limit(for_email: int, from_client: int, limited: bool) -> None:
    assert over_limit(for_email, from_client) is limited


# -- secrets ---------------------------------------------------------------------------------


def test_a_secret_is_a_url_safe_token_and_its_sha256() -> None:
    token, sha = new_secret()
    assert len(token) == 43
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert sha == hashlib.sha256(token.encode()).digest() == digest(token)
    assert len(sha) == 32
    assert new_secret()[0] != token


def test_digest_is_sha256_of_the_utf8_text() -> None:
    assert digest("abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_an_email_is_compared_trimmed_and_in_lower_case() -> None:
    assert normal_email("  Dana.Whitfield@Ortiz.EXAMPLE \n") == "dana.whitfield@ortiz.example"


# -- the viewer ------------------------------------------------------------------------------


def viewer(role: str) -> Viewer:
    return Viewer("shop-1", "dana", "Dana Whitfield", role, "dana@ortiz.example")  # type: ignore[arg-type]


def test_an_advisor_sees_their_own_calls_unless_they_ask_for_everyones() -> None:
    advisor = viewer("advisor")
    assert advisor.sees_everyone is False
    assert advisor.default_scope == "mine"
    assert advisor.assignee_for("mine") == "dana"
    assert advisor.assignee_for("all") is None
    assert advisor.changes_settings is False
    assert advisor.role_words == "Service advisor"


def test_a_service_manager_sees_everyones_and_does_not_change_settings() -> None:
    manager = viewer("service_manager")
    assert manager.sees_everyone is True
    assert manager.default_scope == "all"
    assert manager.assignee_for(manager.default_scope) is None
    assert manager.assignee_for("mine") == "dana"
    assert manager.changes_settings is False
    assert manager.role_words == "Service manager"


def test_only_an_owner_changes_settings() -> None:
    owner = viewer("owner")
    assert owner.default_scope == "all"
    assert owner.changes_settings is True
    assert owner.role_words == "Owner"
