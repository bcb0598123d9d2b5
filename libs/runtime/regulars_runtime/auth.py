"""Shop API keys: issued once, stored as hashes, checked on every staff request.

A key reads ``rk_<key id>_<secret>``. The secret is 32 random bytes, so one SHA-256 is
the right hash (a slow password hash buys nothing against a 256-bit secret and costs a
lot per request). Verified keys are cached briefly: a revoked key stops on a service at
most ``CACHE_SECONDS`` after that service has applied the revocation (its ``api_keys``
copy, fed by the ``regulars.shop`` topic, normally within a second), so well within the
30 seconds a shop is promised.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

log = logging.getLogger(__name__)

PREFIX = "rk_"
CACHE_SECONDS = 10.0

#: told (shop, key id) when a key is verified against the table: at most once per key
#: per ``CACHE_SECONDS`` on each replica, so a record of its use costs next to nothing
KeyUse = Callable[[uuid.UUID, str], Awaitable[None]]


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    secret_sha256: bytes
    api_key: str  # shown once, never stored


def issue_key() -> IssuedKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return IssuedKey(key_id, hashlib.sha256(secret.encode()).digest(), f"{PREFIX}{key_id}_{secret}")


def parse_key(api_key: str) -> tuple[str, str] | None:
    if not api_key.startswith(PREFIX):
        return None
    key_id, sep, secret = api_key[len(PREFIX) :].partition("_")
    if not sep or len(key_id) != 16 or not secret or len(secret) > 100:
        return None
    return key_id, secret


class KeyRing:
    """Looks keys up in this service's ``api_keys`` table, with a short cache."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache_seconds: float = CACHE_SECONDS,
        on_use: KeyUse | None = None,
    ) -> None:
        self.pool = pool
        self.cache_seconds = cache_seconds
        self.on_use = on_use
        self._cache: dict[str, tuple[uuid.UUID, float]] = {}

    async def shop_for(self, authorization: str | None) -> uuid.UUID | None:
        """The shop a ``Bearer`` header belongs to, or None for a missing or bad key."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = token.strip()
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        parsed = parse_key(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT shop_id, secret_sha256 FROM api_keys"
                " WHERE key_id = $1 AND revoked_at IS NULL",
                key_id,
            )
        if row is None:
            return None
        if not hmac.compare_digest(
            bytes(row["secret_sha256"]), hashlib.sha256(secret.encode()).digest()
        ):
            return None
        if len(self._cache) > 10_000:
            self._cache.clear()
        shop_id: uuid.UUID = row["shop_id"]
        self._cache[token] = (shop_id, now + self.cache_seconds)
        if self.on_use is not None:
            try:
                await self.on_use(shop_id, key_id)
            except Exception as exc:  # a record of use never refuses the request
                log.warning("could not record an API key's use", extra={"error": repr(exc)})
        return shop_id
