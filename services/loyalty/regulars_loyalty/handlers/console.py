"""The console's own state: sign-in links, the requests for them, and staff sessions.

Everything a page shows of calls, cases and settings belongs to the service that owns it
and is asked for over HTTP; only who is signed in is kept here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from regulars_runtime.bus import Command, Handler
from regulars_runtime.unit_of_work import Waiting

from ..domain.staff_access import (
    REQUEST_WINDOW,
    LinkRefused,
    SignInLink,
    StaffSession,
    digest,
    new_secret,
    normal_email,
    over_limit,
)
from .base import Deps, LoyaltyUnitOfWork


@dataclass(frozen=True)
class SignInLetter:
    """A sign-in link to mail: the token is in the clear here and nowhere else."""

    to: str
    name: str
    shop_name: str
    token: str


@dataclass(frozen=True)
class SignInAnswer:
    letters: list[SignInLetter]
    #: too many requests for this address or from this client: nothing was issued
    limited: bool


@dataclass(frozen=True)
class AskForSignIn(Command[SignInAnswer]):
    email: str
    client: str


async def ask_for_sign_in(cmd: AskForSignIn, uow: LoyaltyUnitOfWork, deps: Deps) -> SignInAnswer:
    """A link for each shop that has the address on its staff list; none for an unknown
    address, and the same answer to the person asking either way."""
    now = deps.clock()
    email = normal_email(cmd.email)
    email_sha = digest(email)
    by_email, by_client = await uow.sign_ins.count_requests(
        email_sha, cmd.client, now - REQUEST_WINDOW
    )
    if over_limit(by_email, by_client):
        return SignInAnswer([], limited=True)
    await uow.sign_ins.record_request(email_sha, cmd.client, now)
    letters = []
    for known in await uow.sign_ins.staff_by_email(email):
        token, token_sha = new_secret()
        await uow.sign_ins.add_link(
            token_sha, SignInLink.issue(str(known.shop_id), known.member.id, now)
        )
        letters.append(SignInLetter(email, known.member.name, known.shop_name, token))
    return SignInAnswer(letters, limited=False)


class UnknownStaff(Exception):
    pass


@dataclass(frozen=True)
class IssueSignInLink(Command[str]):
    """A link for one staff member, printed by the operator's CLI (the first owner)."""

    shop_id: uuid.UUID
    email: str


async def issue_sign_in_link(cmd: IssueSignInLink, uow: LoyaltyUnitOfWork, deps: Deps) -> str:
    email = normal_email(cmd.email)
    found = [k for k in await uow.sign_ins.staff_by_email(email) if k.shop_id == cmd.shop_id]
    if not found:
        raise UnknownStaff(
            f"shop {cmd.shop_id} has no staff member with email {email!r} in its policy"
            " (add them with PUT /v1/policy on intake; loyalty learns it within seconds)"
        )
    token, token_sha = new_secret()
    await uow.sign_ins.add_link(
        token_sha, SignInLink.issue(str(cmd.shop_id), found[0].member.id, deps.clock())
    )
    return token


@dataclass(frozen=True)
class StartedSession:
    token: str
    shop_id: uuid.UUID
    staff_id: str


@dataclass(frozen=True)
class SignIn(Command[StartedSession]):
    link_token: str


async def sign_in(cmd: SignIn, uow: LoyaltyUnitOfWork, deps: Deps) -> StartedSession:
    """Spend a link and start a session; LinkRefused if the link is unknown, used or old,
    or its person is no longer on the shop's staff list."""
    now = deps.clock()
    link_sha = digest(cmd.link_token)
    link = await uow.sign_ins.take_link(link_sha)
    if link is None:
        raise LinkRefused("This sign-in link is not one we sent. Ask for a new one.")
    link.check(now)
    await uow.sign_ins.spend_link(link_sha, now)
    shop_id = uuid.UUID(link.shop_id)
    try:
        known = await uow.policy(shop_id)
    except Waiting:
        known = None
    if known is None or known.policy.staff_member(link.staff_id) is None:
        raise LinkRefused("You are no longer on this shop's staff list.")
    token, token_sha = new_secret()
    csrf, _ = new_secret()
    await uow.sign_ins.add_session(
        token_sha, StaffSession(link.shop_id, link.staff_id, csrf, now, now)
    )
    return StartedSession(token, shop_id, link.staff_id)


@dataclass(frozen=True)
class TouchSession(Command[None]):
    token_sha256: bytes


async def touch_session(cmd: TouchSession, uow: LoyaltyUnitOfWork, deps: Deps) -> None:
    await uow.sign_ins.touch_session(cmd.token_sha256, deps.clock())


@dataclass(frozen=True)
class SignOut(Command[None]):
    token_sha256: bytes


async def sign_out(cmd: SignOut, uow: LoyaltyUnitOfWork, deps: Deps) -> None:
    await uow.sign_ins.end_session(cmd.token_sha256, deps.clock())


COMMANDS: dict[type, Handler[LoyaltyUnitOfWork, Deps]] = {
    AskForSignIn: ask_for_sign_in,
    IssueSignInLink: issue_sign_in_link,
    SignIn: sign_in,
    TouchSession: touch_session,
    SignOut: sign_out,
}
