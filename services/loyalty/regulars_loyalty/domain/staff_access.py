"""Who may sign in to the console, for how long, and what they see. Pure.

Staff are the shop policy's ``staff`` entries. Nobody has a password: a sign-in link,
mailed to an address on the staff list, is good once for 15 minutes; a session ends after
12 hours without a request. A person's role is read from the current policy on every
request, so a removed or demoted person loses access at once, not when a session ends.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

LINK_LIFETIME = timedelta(minutes=15)
SESSION_IDLE = timedelta(hours=12)
#: a session's last-seen time is written at most this often (a read per page, not a write)
TOUCH_EVERY = timedelta(minutes=1)

#: sign-in requests allowed per window: per address (a person who mistyped, then retried),
#: and per client address (one office shares one)
REQUEST_WINDOW = timedelta(minutes=15)
REQUESTS_PER_EMAIL = 5
REQUESTS_PER_CLIENT = 30

Role = Literal["advisor", "service_manager", "owner"]
Scope = Literal["mine", "all"]

ROLE_WORDS: dict[str, str] = {
    "advisor": "Service advisor",
    "service_manager": "Service manager",
    "owner": "Owner",
}


def new_secret() -> tuple[str, bytes]:
    """A token to hand out once, and the hash that is kept of it."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def digest(token: str) -> bytes:
    # a 256-bit random token needs no slow hash: nobody can guess one to try
    return hashlib.sha256(token.encode()).digest()


def normal_email(email: str) -> str:
    return email.strip().lower()


class LinkRefused(Exception):
    """A sign-in link that cannot be used; the message says why, in a person's words."""


@dataclass(frozen=True)
class SignInLink:
    shop_id: str
    staff_id: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None

    @classmethod
    def issue(cls, shop_id: str, staff_id: str, now: datetime) -> SignInLink:
        return cls(shop_id, staff_id, now, now + LINK_LIFETIME)

    def check(self, now: datetime) -> None:
        """Raises if the link is spent or out of date."""
        if self.used_at is not None:
            raise LinkRefused("This sign-in link was used already. Ask for a new one.")
        if now >= self.expires_at:
            raise LinkRefused("This sign-in link is more than 15 minutes old. Ask for a new one.")


@dataclass(frozen=True)
class StaffSession:
    shop_id: str
    staff_id: str
    csrf: str
    started_at: datetime
    last_seen_at: datetime
    ended_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.ended_at is None and now < self.last_seen_at + SESSION_IDLE

    def needs_touch(self, now: datetime) -> bool:
        return now - self.last_seen_at >= TOUCH_EVERY


def over_limit(requests_for_email: int, requests_from_client: int) -> bool:
    """True once this request would be one too many, for the address or the client."""
    return requests_for_email >= REQUESTS_PER_EMAIL or requests_from_client >= REQUESTS_PER_CLIENT


@dataclass(frozen=True)
class Viewer:
    """The signed-in person as the pages see them."""

    shop_id: str
    staff_id: str
    name: str
    role: Role
    email: str | None

    @property
    def sees_everyone(self) -> bool:
        """A service manager and an owner see every call and case; an advisor their own,
        and everyone's only when they ask (the "everyone" filter)."""
        return self.role != "advisor"

    @property
    def changes_settings(self) -> bool:
        return self.role == "owner"

    @property
    def role_words(self) -> str:
        return ROLE_WORDS[self.role]

    @property
    def default_scope(self) -> Scope:
        return "all" if self.sees_everyone else "mine"

    def assignee_for(self, scope: Scope) -> str | None:
        """Whose calls and cases a list shows: None for everyone's."""
        return self.staff_id if scope == "mine" else None
