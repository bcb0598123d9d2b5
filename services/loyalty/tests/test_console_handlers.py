"""The console's sign-in commands through loyalty's bus, on the unit of work in memory:
links asked for and spent, the limits on asking, sessions touched and ended."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from regulars_events.catalogue import ShopPolicyChanged
from regulars_events.envelope import Envelope
from regulars_loyalty import bootstrap
from regulars_loyalty.domain.staff_access import (
    LinkRefused,
    SignInLink,
    StaffSession,
    digest,
)
from regulars_loyalty.handlers.console import (
    AskForSignIn,
    IssueSignInLink,
    SignIn,
    SignInAnswer,
    SignOut,
    StartedSession,
    TouchSession,
    UnknownStaff,
)
from regulars_runtime.bus import MessageBus
from regulars_runtime.testing import FakeClock
from regulars_shop.policy import Policy

from services.loyalty.tests.fakes import Loyalty

SHOP = uuid.UUID("00000000-0000-4000-8000-00000000cafe")
OTHER_SHOP = uuid.UUID("00000000-0000-4000-8000-00000000beef")
NOW = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)
CLIENT = "203.0.113.7"

DANA = {"id": "dana", "name": "Dana Whitfield", "role": "owner", "email": "dana@ortiz.example"}
SAM = {"id": "sam", "name": "Sam Ortiz", "role": "advisor", "email": "Sam@Ortiz.example"}


def policy_change(
    shop: uuid.UUID, staff: list[dict[str, Any]], name: str | None, version: int = 1
) -> Envelope:
    body = {
        **Policy.defaults().model_dump(mode="json"),
        "staff": staff,
        "contact": {"name": name},
    }
    return Envelope.wrap(
        ShopPolicyChanged(version=version, policy=body),
        source="intake",
        shop_id=str(shop),
        time=NOW,
    )


async def console(
    *shops: tuple[uuid.UUID, list[dict[str, Any]], str | None],
) -> tuple[Loyalty, MessageBus[Any, Any]]:
    loyalty = Loyalty(FakeClock(NOW))
    bus = bootstrap.bus(loyalty.deps, unit_of_work=loyalty.unit_of_work)
    bus.transaction = loyalty.transaction
    for shop, staff, name in shops or ((SHOP, [DANA, SAM], "Ortiz Auto"),):
        await bus.handle_event(policy_change(shop, staff, name), None)
    return loyalty, bus


async def ask(bus: MessageBus[Any, Any], email: str, client: str = CLIENT) -> SignInAnswer:
    answer = await bus.handle(AskForSignIn(email, client))
    assert isinstance(answer, SignInAnswer)
    return answer


# -- asking for a link -----------------------------------------------------------------------


async def test_a_staff_address_gets_one_letter_and_only_its_hash_is_kept() -> None:
    loyalty, bus = await console()
    answer = await ask(bus, "  DANA@Ortiz.Example ")
    assert answer.limited is False
    assert len(answer.letters) == 1
    letter = answer.letters[0]
    assert (letter.to, letter.name, letter.shop_name) == (
        "dana@ortiz.example",
        "Dana Whitfield",
        "Ortiz Auto",
    )
    assert len(letter.token) == 43  # 32 random bytes, URL-safe base64
    assert loyalty.sign_ins.links == {
        digest(letter.token): SignInLink(str(SHOP), "dana", NOW, NOW + timedelta(minutes=15), None)
    }
    # the token itself is nowhere in what is stored; the request is kept by the address' hash
    assert letter.token.encode() not in loyalty.sign_ins.links
    assert [(r.at, r.email_sha256, r.client) for r in loyalty.sign_ins.requests] == [
        (NOW, digest("dana@ortiz.example"), CLIENT)
    ]


async def test_a_staff_address_stored_in_capitals_is_found_by_its_lower_case() -> None:
    loyalty, bus = await console()
    answer = await ask(bus, "sam@ortiz.example")
    assert [(lt.to, lt.name) for lt in answer.letters] == [("sam@ortiz.example", "Sam Ortiz")]
    assert [link.staff_id for link in loyalty.sign_ins.links.values()] == ["sam"]


async def test_an_unknown_address_gets_the_same_answer_and_no_link() -> None:
    loyalty, bus = await console()
    answer = await ask(bus, "stranger@example.com")
    assert answer == SignInAnswer([], limited=False)
    assert loyalty.sign_ins.links == {}
    assert len(loyalty.sign_ins.requests) == 1  # it still counts towards the limits


async def test_two_shops_with_the_same_address_send_two_letters_each_with_its_own_link() -> None:
    loyalty, bus = await console(
        (SHOP, [DANA], "Ortiz Auto"),
        (OTHER_SHOP, [{**DANA, "id": "d-2", "name": "Dana W."}], None),
    )
    answer = await ask(bus, "dana@ortiz.example")
    # shop id order, as the PostgreSQL query's ORDER BY: ...beef before ...cafe
    assert [(lt.name, lt.shop_name) for lt in answer.letters] == [
        ("Dana W.", "your shop"),
        ("Dana Whitfield", "Ortiz Auto"),
    ]
    tokens = {lt.token for lt in answer.letters}
    assert len(tokens) == 2
    links = {sha: (link.shop_id, link.staff_id) for sha, link in loyalty.sign_ins.links.items()}
    assert links == {
        digest(answer.letters[0].token): (str(OTHER_SHOP), "d-2"),
        digest(answer.letters[1].token): (str(SHOP), "dana"),
    }
    assert len(loyalty.sign_ins.requests) == 1  # one request, two letters


async def test_the_sixth_request_for_an_address_in_15_minutes_is_limited() -> None:
    loyalty, bus = await console()
    for i in range(5):
        answer = await ask(bus, "dana@ortiz.example", client=f"198.51.100.{i}")
        assert answer.limited is False and len(answer.letters) == 1
        loyalty.clock.advance(timedelta(minutes=2))
    sixth = await ask(bus, "Dana@ortiz.example", client="198.51.100.99")
    assert sixth == SignInAnswer([], limited=True)
    assert len(loyalty.sign_ins.links) == 5
    assert len(loyalty.sign_ins.requests) == 5  # a refused request is not recorded
    # another address is not limited by Dana's
    assert len((await ask(bus, "sam@ortiz.example")).letters) == 1


async def test_requests_for_an_unknown_address_count_towards_its_limit() -> None:
    loyalty, bus = await console()
    for _ in range(5):
        assert (await ask(bus, "nobody@example.com")).limited is False
    assert (await ask(bus, "NOBODY@example.com")).limited is True
    assert loyalty.sign_ins.links == {}


async def test_the_limit_for_an_address_is_per_15_minutes() -> None:
    loyalty, bus = await console()
    for _ in range(5):
        await ask(bus, "dana@ortiz.example")
    loyalty.clock.advance(timedelta(minutes=15))
    # the first five are exactly 15 minutes old: still in the window
    assert (await ask(bus, "dana@ortiz.example")).limited is True
    loyalty.clock.advance(timedelta(microseconds=1))
    answer = await ask(bus, "dana@ortiz.example")
    assert answer.limited is False and len(answer.letters) == 1


async def test_the_31st_request_from_one_client_is_limited_whatever_the_address() -> None:
    loyalty, bus = await console()
    for i in range(30):
        assert (await ask(bus, f"person{i}@example.com")).limited is False
    assert (await ask(bus, "dana@ortiz.example")).limited is True
    assert loyalty.sign_ins.links == {}
    # from another client the same address is fine
    assert len((await ask(bus, "dana@ortiz.example", client="192.0.2.1")).letters) == 1


# -- the operator's link ---------------------------------------------------------------------


async def test_the_operator_issues_a_link_for_a_staff_member_of_that_shop() -> None:
    loyalty, bus = await console(
        (SHOP, [DANA], "Ortiz Auto"), (OTHER_SHOP, [{**DANA, "id": "d-2"}], "Other")
    )
    token = await bus.handle(IssueSignInLink(SHOP, " Dana@Ortiz.example"))
    assert isinstance(token, str) and len(token) == 43
    assert loyalty.sign_ins.links == {
        digest(token): SignInLink(str(SHOP), "dana", NOW, NOW + timedelta(minutes=15))
    }
    assert loyalty.sign_ins.requests == []  # the operator's CLI is not rate limited


async def test_the_operator_cannot_issue_a_link_for_an_address_not_on_that_shops_list() -> None:
    loyalty, bus = await console((SHOP, [DANA], "Ortiz Auto"), (OTHER_SHOP, [SAM], "Other"))
    with pytest.raises(UnknownStaff, match=re.escape("'sam@ortiz.example'")):
        await bus.handle(IssueSignInLink(SHOP, "sam@ortiz.example"))
    with pytest.raises(UnknownStaff):
        await bus.handle(IssueSignInLink(SHOP, "nobody@example.com"))
    assert loyalty.sign_ins.links == {}


# -- signing in ------------------------------------------------------------------------------


async def a_link(bus: MessageBus[Any, Any], email: str = "dana@ortiz.example") -> str:
    letters = (await ask(bus, email)).letters
    assert len(letters) == 1
    return letters[0].token


async def test_a_link_signs_in_once_and_starts_a_session() -> None:
    loyalty, bus = await console()
    token = await a_link(bus)
    loyalty.clock.advance(timedelta(minutes=3))
    started = await bus.handle(SignIn(token))
    assert isinstance(started, StartedSession)
    assert (started.shop_id, started.staff_id) == (SHOP, "dana")
    assert len(started.token) == 43 and started.token != token
    assert loyalty.sign_ins.links[digest(token)].used_at == NOW + timedelta(minutes=3)
    session = loyalty.sign_ins.sessions[digest(started.token)]
    assert session == StaffSession(
        str(SHOP),
        "dana",
        session.csrf,
        NOW + timedelta(minutes=3),
        NOW + timedelta(minutes=3),
        None,
    )
    assert len(session.csrf) == 43
    assert list(loyalty.sign_ins.sessions) == [digest(started.token)]  # only the hash


async def test_a_used_link_is_refused_the_second_time() -> None:
    loyalty, bus = await console()
    token = await a_link(bus)
    await bus.handle(SignIn(token))
    loyalty.clock.advance(timedelta(seconds=5))
    with pytest.raises(LinkRefused, match="used already"):
        await bus.handle(SignIn(token))
    assert len(loyalty.sign_ins.sessions) == 1
    assert loyalty.sign_ins.links[digest(token)].used_at == NOW  # the first use stands


async def test_a_link_is_refused_at_exactly_15_minutes() -> None:
    loyalty, bus = await console()
    token = await a_link(bus)
    loyalty.clock.advance(timedelta(minutes=15))
    with pytest.raises(LinkRefused, match="more than 15 minutes old"):
        await bus.handle(SignIn(token))
    assert loyalty.sign_ins.sessions == {}
    assert loyalty.sign_ins.links[digest(token)].used_at is None


async def test_a_link_works_just_before_15_minutes() -> None:
    loyalty, bus = await console()
    token = await a_link(bus)
    loyalty.clock.advance(timedelta(minutes=15) - timedelta(microseconds=1))
    started = await bus.handle(SignIn(token))
    assert started.staff_id == "dana"


async def test_a_token_that_was_never_sent_is_refused() -> None:
    loyalty, bus = await console()
    await a_link(bus)
    with pytest.raises(LinkRefused, match="not one we sent"):
        await bus.handle(SignIn("made-up-token"))
    assert loyalty.sign_ins.sessions == {}


async def test_a_person_removed_from_the_staff_list_after_the_link_was_sent_is_refused() -> None:
    loyalty, bus = await console()
    token = await a_link(bus, "sam@ortiz.example")
    await bus.handle_event(policy_change(SHOP, [DANA], "Ortiz Auto", version=2), None)
    with pytest.raises(LinkRefused, match="no longer on this shop's staff list"):
        await bus.handle(SignIn(token))
    assert loyalty.sign_ins.sessions == {}


async def test_a_link_is_only_good_for_the_shop_it_was_sent_for() -> None:
    # Sam works at both shops; the other shop removes him: his link there is refused,
    # the one for the shop that still lists him works
    _, bus = await console((SHOP, [DANA, SAM], "Ortiz Auto"), (OTHER_SHOP, [SAM], "Other Auto"))
    letters = {lt.shop_name: lt.token for lt in (await ask(bus, "sam@ortiz.example")).letters}
    await bus.handle_event(policy_change(OTHER_SHOP, [DANA], "Other Auto", version=2), None)
    with pytest.raises(LinkRefused):
        await bus.handle(SignIn(letters["Other Auto"]))
    started = await bus.handle(SignIn(letters["Ortiz Auto"]))
    assert (started.shop_id, started.staff_id) == (SHOP, "sam")


# -- sessions --------------------------------------------------------------------------------


async def signed_in(loyalty: Loyalty, bus: MessageBus[Any, Any]) -> bytes:
    started = await bus.handle(SignIn(await a_link(bus)))
    return digest(started.token)


async def test_a_touch_moves_the_last_seen_time_and_keeps_a_session_live() -> None:
    loyalty, bus = await console()
    sha = await signed_in(loyalty, bus)
    loyalty.clock.advance(timedelta(hours=11))
    await bus.handle(TouchSession(sha))
    session = loyalty.sign_ins.sessions[sha]
    assert session.last_seen_at == NOW + timedelta(hours=11)
    assert session.started_at == NOW
    assert session.live(NOW + timedelta(hours=22)) is True
    assert session.live(NOW + timedelta(hours=23)) is False


async def test_signing_out_ends_the_session_and_a_touch_does_not_bring_it_back() -> None:
    loyalty, bus = await console()
    sha = await signed_in(loyalty, bus)
    loyalty.clock.advance(timedelta(minutes=10))
    await bus.handle(SignOut(sha))
    ended = loyalty.sign_ins.sessions[sha]
    assert ended.ended_at == NOW + timedelta(minutes=10)
    assert ended.live(NOW + timedelta(minutes=10)) is False
    loyalty.clock.advance(timedelta(minutes=1))
    await bus.handle(TouchSession(sha))
    await bus.handle(SignOut(sha))
    assert loyalty.sign_ins.sessions[sha] == ended


async def test_signing_out_one_session_leaves_the_others() -> None:
    loyalty, bus = await console()
    first = await signed_in(loyalty, bus)
    second = await signed_in(loyalty, bus)
    await bus.handle(SignOut(first))
    assert loyalty.sign_ins.sessions[first].ended_at == NOW
    assert loyalty.sign_ins.sessions[second].ended_at is None
