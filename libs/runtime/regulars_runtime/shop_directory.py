"""A service's copy of the shop facts it needs, kept from the ``regulars.shop`` topic."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from regulars_events.envelope import Envelope
from regulars_shop.policy import Policy

from .auth import key_arrived

SHOP_EVENT_PREFIX = "regulars.shop."


def is_shop_event(event_type: str) -> bool:
    return event_type.startswith(SHOP_EVENT_PREFIX)


async def apply_shop_event(envelope: Envelope, conn: asyncpg.Connection) -> None:
    data = envelope.data
    shop_id = uuid.UUID(envelope.shop_id)
    if envelope.type == "regulars.shop.api_key_issued.v1":
        await conn.execute(
            "INSERT INTO api_keys (key_id, shop_id, secret_sha256, issued_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO NOTHING",
            data["key_id"],
            shop_id,
            bytes.fromhex(data["secret_sha256"]),
            envelope.time,
        )
        key_arrived(data["key_id"])
    elif envelope.type == "regulars.shop.api_key_revoked.v1":
        await conn.execute(
            # the first word holds: a replay, or intake's own copy revoked at once, keeps it
            "UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND shop_id = $3"
            " AND revoked_at IS NULL",
            data["key_id"],
            envelope.time,
            shop_id,
        )
    elif envelope.type == "regulars.shop.policy_changed.v1":
        # Versions can arrive twice (replay) but never out of order for one shop (one key);
        # the guard keeps an older copy from overwriting a newer one all the same.
        await conn.execute(
            "INSERT INTO shop_policies (shop_id, version, policy) VALUES ($1, $2, $3)"
            " ON CONFLICT (shop_id) DO UPDATE SET version = excluded.version,"
            " policy = excluded.policy, updated_at = now()"
            " WHERE shop_policies.version < excluded.version",
            shop_id,
            int(data["version"]),
            data["policy"],
        )


#: a policy version never changes, and validating one costs milliseconds (every state's
#: quiet hours): parse each (shop, version) once per process
_PARSED: dict[tuple[uuid.UUID, int], Policy] = {}


async def policy_for(conn: asyncpg.Connection, shop_id: uuid.UUID) -> tuple[int, Policy] | None:
    version = await conn.fetchval("SELECT version FROM shop_policies WHERE shop_id = $1", shop_id)
    if version is None:
        return None
    key = (shop_id, int(version))
    parsed = _PARSED.get(key)
    if parsed is None:
        row = await conn.fetchrow(
            "SELECT version, policy FROM shop_policies WHERE shop_id = $1", shop_id
        )
        if row is None:
            return None
        document: dict[str, Any] = row["policy"]
        key = (shop_id, int(row["version"]))
        parsed = Policy.model_validate(document)
        if len(_PARSED) > 10_000:
            _PARSED.clear()
        _PARSED[key] = parsed
    return key[1], parsed
