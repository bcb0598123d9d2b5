"""Shop API keys: issued once, stored as hashes, checked on every staff request.

A key reads ``rk_<key id>_<secret>``. The secret is 32 random bytes, so one SHA-256 is
the right hash (a slow password hash buys nothing against a 256-bit secret and costs a
lot per request). Verified keys are cached briefly: a revoked key stops on a service at
most ``CACHE_SECONDS`` after that service has applied the revocation (its ``api_keys``
copy, fed by the ``regulars.shop`` topic, normally within a second), so well within the
30 seconds a shop is promised.

A key that fails is remembered too, for ``REFUSED_SECONDS``, so a client retrying a bad
key costs no lookups; and failures are counted per client address on every replica
together (``failed_auth``): over that limit an address is answered 429 without a lookup,
so a flood of made-up keys, each one new, costs a handful of lookups, not one each.
Only a key already verified on this replica still passes from such an address.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from . import metrics
from .limit_store import SharedLimits
from .limits import Rate, too_many

log = logging.getLogger(__name__)

PREFIX = "rk_"
CACHE_SECONDS = 10.0
#: how long a key that failed is refused again without a lookup
REFUSED_SECONDS = 30.0
#: keys remembered either way, at most (a flood must not grow memory without bound)
REMEMBERED = 10_000
#: a key issued this recently may have been refused just before this replica had it
_ISSUED_WINDOW = 60.0

#: key ids this process applied an issue of, and when: a refusal remembered from before
#: that is forgotten, so a new key works as soon as it has arrived
_issued: OrderedDict[str, float] = OrderedDict()


def key_arrived(key_id: str) -> None:
    """This replica now has ``key_id`` (told by the shop directory as it applies it)."""
    now = time.monotonic()
    _issued[key_id] = now
    _issued.move_to_end(key_id)
    while _issued and (next(iter(_issued.values())) < now - _ISSUED_WINDOW):
        _issued.popitem(last=False)
    while len(_issued) > REMEMBERED:
        _issued.popitem(last=False)


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
    """Looks keys up in this service's ``api_keys`` table, with a short cache of good and
    of bad keys, and a limit on failures per client address."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        cache_seconds: float = CACHE_SECONDS,
        on_use: KeyUse | None = None,
        *,
        service: str = "",
        limits: SharedLimits | None = None,
        failed_auth: Rate | None = None,
    ) -> None:
        self.pool = pool
        self.cache_seconds = cache_seconds
        self.on_use = on_use
        self.service = service
        self.limits = limits
        self.failed_auth = failed_auth
        self._cache: dict[str, tuple[uuid.UUID, float]] = {}
        # sha256 of a refused token -> (its key id, refused until, refused when)
        self._refused: OrderedDict[bytes, tuple[str, float, float]] = OrderedDict()

    async def shop_for(
        self, authorization: str | None, client: str | None = None
    ) -> uuid.UUID | None:
        """The shop a ``Bearer`` header belongs to, or None for a missing or bad key;
        429 (a Problem) for a ``client`` address over its limit of failures."""
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
            return None  # no lookup was made for it
        key_id, secret = parsed
        fingerprint = hashlib.sha256(token.encode()).digest()
        if self._still_refused(fingerprint, now):
            await self._failed(client)
            return None
        if client is not None and self.limits is not None and self.failed_auth is not None:
            verdict = self.limits.refused_here(self.failed_auth, client)
            if verdict is not None:
                raise too_many(self.failed_auth, verdict)
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT shop_id, secret_sha256 FROM api_keys"
                " WHERE key_id = $1 AND revoked_at IS NULL",
                key_id,
            )
        if row is None or not hmac.compare_digest(
            bytes(row["secret_sha256"]), hashlib.sha256(secret.encode()).digest()
        ):
            metrics.API_KEY_LOOKUPS.labels(self.service, "refused").inc()
            self._refuse(fingerprint, key_id, now)
            await self._failed(client)
            return None
        metrics.API_KEY_LOOKUPS.labels(self.service, "found").inc()
        if len(self._cache) > REMEMBERED:
            self._cache.clear()
        shop_id: uuid.UUID = row["shop_id"]
        self._cache[token] = (shop_id, now + self.cache_seconds)
        if self.on_use is not None:
            try:
                await self.on_use(shop_id, key_id)
            except Exception as exc:  # a record of use never refuses the request
                log.warning("could not record an API key's use", extra={"error": repr(exc)})
        return shop_id

    def _still_refused(self, fingerprint: bytes, now: float) -> bool:
        found = self._refused.get(fingerprint)
        if found is None:
            return False
        key_id, until, when = found
        arrived = _issued.get(key_id)
        if until <= now or (arrived is not None and arrived >= when - 5.0):
            # expired, or the key was issued about when it was refused: look again
            del self._refused[fingerprint]
            return False
        return True

    def _refuse(self, fingerprint: bytes, key_id: str, now: float) -> None:
        self._refused[fingerprint] = (key_id, now + REFUSED_SECONDS, now)
        self._refused.move_to_end(fingerprint)
        while len(self._refused) > REMEMBERED:
            self._refused.popitem(last=False)

    async def _failed(self, client: str | None) -> None:
        """Counts a failure against the client's address; 429 once it is over."""
        if client is None or self.limits is None or self.failed_auth is None:
            return
        await self.limits.enforce(self.failed_auth, client)
