"""Who is looking at a console page: the session cookie, the CSRF check, the forms.

The session cookie is the one credential a browser holds: HttpOnly, SameSite=Lax, Secure
everywhere but this machine. Every form carries a CSRF token: the session's own once
signed in, before that a random one also set as a cookie (double submit).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import Response
from regulars_runtime import staff
from regulars_runtime.service import acting_for, context
from regulars_shop.policy import Policy

from ...adapters import queries
from ...adapters.sign_ins import session as stored_session
from ...domain.staff_access import SESSION_IDLE, Viewer, digest
from ...handlers.console import TouchSession

SESSION_COOKIE = "regulars_session"
FORM_COOKIE = "regulars_form"
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class SignInNeeded(Exception):
    """No live session: a page sends the person to the sign-in page."""


class Forbidden(Exception):
    """Signed in, but this is not theirs to see or do (an advisor on the settings)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadForm(Exception):
    """A form post without its CSRF token, or not a form."""


@dataclass(frozen=True)
class Signed:
    """A signed-in request: the person, their session's CSRF token, their principal."""

    viewer: Viewer
    csrf: str
    token_sha256: bytes
    #: the shop's policy as this request found it (read once, for every part of the page)
    policy: Policy
    #: the cookie's value, and whether this request moved the session's idle clock (then
    #: the cookie is set again, so it lasts as long as the session it names)
    token: str = ""
    touched: bool = False

    @property
    def principal(self) -> staff.StaffPrincipal:
        return staff.StaffPrincipal(
            uuid.UUID(self.viewer.shop_id), self.viewer.staff_id, self.viewer.role
        )

    @property
    def shop(self) -> uuid.UUID:
        return uuid.UUID(self.viewer.shop_id)

    @property
    def staff_names(self) -> dict[str, str]:
        return {m.id: m.name for m in self.policy.staff}


def secure_cookies(request: Request) -> bool:
    return (request.url.hostname or "") not in LOCAL_HOSTS


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        # the server ends an idle session; the cookie lasts no longer than that could be
        max_age=int(SESSION_IDLE.total_seconds()),
        httponly=True,
        secure=secure_cookies(request),
        samesite="lax",
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, secure=secure_cookies(request), samesite="lax", path="/"
    )


async def signed_in(request: Request) -> Signed:
    """The live session of this request and its person as the shop's policy has them now;
    SignInNeeded when there is none (or the person left the staff list)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        raise SignInNeeded
    ctx = context(request)
    ctx.refuse_known_guesser(request.scope)  # a flood of made-up cookies costs no lookups
    token_sha = digest(token)
    found = await stored_session(ctx.pool, token_sha)
    now = ctx.deps.clock()
    if found is None:
        await ctx.count_failure(request.scope)
        raise SignInNeeded
    if not found.live(now):
        raise SignInNeeded
    shop = acting_for(uuid.UUID(found.shop_id))  # its log lines and span name the shop
    await ctx.limit_shop(shop)
    policy = await queries.shop_policy(ctx.pool, shop)
    member = policy.staff_member(found.staff_id)
    if member is None:
        raise SignInNeeded
    touched = found.needs_touch(now)
    if touched:
        await ctx.bus.handle(TouchSession(token_sha))
    viewer = Viewer(found.shop_id, member.id, member.name, member.role, member.email)
    return Signed(viewer, found.csrf, token_sha, policy, token, touched)


async def form_of(request: Request) -> dict[str, str]:
    """An urlencoded form body, one value per name (the last); BadForm otherwise."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise BadForm
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise BadForm from None
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def check_csrf(form: dict[str, Any], expected: str) -> None:
    given = form.get("csrf")
    if not isinstance(given, str) or not expected or not hmac.compare_digest(given, expected):
        raise BadForm


def form_token(request: Request) -> tuple[str, bool]:
    """The pre-sign-in CSRF token: the cookie's, or a new one (True: set the cookie)."""
    existing = request.cookies.get(FORM_COOKIE)
    if existing and 20 <= len(existing) <= 100:
        return existing, False
    return secrets.token_urlsafe(24), True


def set_form_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        FORM_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        secure=secure_cookies(request),
        samesite="lax",
        path="/",
    )


async def public_page(request: Request) -> None:
    """The sign-in pages' limits, before anything is looked up: the caller's rate of
    public requests, and an address known to be guessing links is refused (429) at once."""
    ctx = context(request)
    ctx.refuse_known_guesser(request.scope)
    await ctx.limit_client(request.scope)


def client_of(request: Request) -> str:
    # the connecting address: behind the ingress that is the proxy's, so the per-address
    # limit is generous and the per-email one does the real work
    return (request.client.host if request.client else "unknown")[:100]
