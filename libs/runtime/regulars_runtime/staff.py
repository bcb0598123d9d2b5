"""Staff tokens: a signed-in staff member's say-so, carried from the console to the service
that owns an action, beside the shop's API key.

A token is a JWT (HS256, PyJWT) scoped to one shop, one staff member and their role, and
it lives minutes: the console mints one per request from a session it has just checked
against the shop's current staff list, so a removed or demoted person loses their rights
within that time. Every service verifies it with the same key (``REGULARS_STAFF_TOKEN_KEY``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

import jwt

Role = Literal["advisor", "service_manager", "owner"]
ROLES: tuple[Role, ...] = get_args(Role)

ISSUER = "regulars-console"
AUDIENCE = "regulars"
ALGORITHM = "HS256"
LIFETIME = timedelta(minutes=5)
#: how far the console's clock and a service's may disagree
SKEW_SECONDS = 30

#: a key anyone could read: used in embedded mode (one developer's machine, every
#: service on 127.0.0.1) when none is set, so the services agree without configuration
EMBEDDED_KEY = "regulars-embedded-staff-token-key-not-for-production"
MIN_KEY_LENGTH = 32


@dataclass(frozen=True)
class StaffPrincipal:
    """Who is acting: one staff member of one shop, in the role the shop gave them."""

    shop_id: uuid.UUID
    staff_id: str
    role: Role

    @property
    def is_manager(self) -> bool:
        return self.role in ("service_manager", "owner")

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"


def looks_like_staff_token(token: str) -> bool:
    """A JWT's header is base64 of ``{"``; an API key starts ``rk_``."""
    return token.startswith("eyJ") and token.count(".") == 2


def mint(key: str, principal: StaffPrincipal, now: datetime, lifetime: timedelta = LIFETIME) -> str:
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": principal.staff_id,
        "shop": str(principal.shop_id),
        "role": principal.role,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify(key: str, token: str, now: datetime) -> StaffPrincipal | None:
    """The principal a token names, or None if it is forged, expired or malformed."""
    if len(token) > 4096:
        return None
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # every time claim is checked below against the caller's clock: PyJWT's own
            # checks read the system clock (and refuse an iat a second ahead of it, as a
            # console whose clock runs slightly fast would sign)
            options={
                "require": ["exp", "iat", "sub", "iss", "aud"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.PyJWTError:
        return None
    at = now.timestamp()
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
    if not (isinstance(exp, int) and isinstance(iat, int) and isinstance(nbf, int)):
        return None
    if exp + SKEW_SECONDS < at or iat - SKEW_SECONDS > at or nbf - SKEW_SECONDS > at:
        return None
    role, staff_id, shop = claims.get("role"), claims.get("sub"), claims.get("shop")
    if role not in ROLES or not isinstance(staff_id, str) or not staff_id:
        return None
    try:
        shop_id = uuid.UUID(str(shop))
    except ValueError:
        return None
    return StaffPrincipal(shop_id, staff_id, role)
