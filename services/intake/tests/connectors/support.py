"""Fixtures of each system's webhooks (written from their public docs) and how each
system signs them, for the connector tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from regulars_intake.domain.connectors import Delivery, Raw
from regulars_intake.domain.postings import Posting, parse_posting

HERE = Path(__file__).parent
NOW = datetime(2026, 11, 22, 18, 0, tzinfo=UTC)


def body(system: str, name: str) -> bytes:
    return (HERE / system / f"{name}.json").read_bytes()


def payload(system: str, name: str) -> Any:
    return json.loads(body(system, name))


def postings(raws: list[Raw]) -> list[Posting]:
    """What intake makes of them: every mapped posting must pass its checks."""
    return [parse_posting(raw) for raw in raws]


def shopmonkey_headers(
    secret: str, raw: bytes, at: datetime = NOW, wid: str = "msg_1"
) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    stamp = str(int(at.timestamp()))
    signature = base64.b64encode(
        hmac.new(key, f"{wid}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    ).decode()
    return {
        "webhook-id": wid,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{signature}",
        "webhook-version": "3",
    }


def housecall_headers(secret: str, raw: bytes, at: datetime = NOW) -> dict[str, str]:
    stamp = str(int(at.timestamp()))
    signature = hmac.new(secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return {"api-timestamp": stamp, "api-signature": signature}


def jobber_headers(secret: str, raw: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).digest()
    return {"x-jobber-hmac-sha256": base64.b64encode(digest).decode()}


def servicetitan_headers(secret: str, raw: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).digest()
    return {"x-servicetitan-signature": base64.b64encode(digest).decode()}


def delivery(
    raw: bytes,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    at: datetime = NOW,
) -> Delivery:
    return Delivery(headers or {}, query or {}, raw, at)
