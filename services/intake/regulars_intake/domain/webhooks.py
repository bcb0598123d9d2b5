"""Outbound webhooks: what a shop subscribes to, and what each delivery attempt decides.

Deliveries follow Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature);
the body is the event as a CloudEvent in structured JSON mode. Nothing here does I/O:
the worker sends, then asks :func:`judge` what the answer means.
"""

from __future__ import annotations

import ipaddress
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

#: the ladder after the first try (which is at once): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
DEFAULT_RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
#: an endpoint failing this long is switched off and its shop's owner told
DISABLE_AFTER = timedelta(days=5)
#: after a rotation the old secret still signs for this long, beside the new one
OLD_SECRET_KEPT = timedelta(hours=24)
SEND_TIMEOUT_SECONDS = 10.0
MAX_URL_LENGTH = 2_000
MAX_DESCRIPTION_LENGTH = 500
MAX_WEBHOOKS_PER_SHOP = 20
#: the share of a wait drawn at random either side, so that failed endpoints coming back
#: are not all retried in the same second
JITTER = 0.1

DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookRejected(ValueError):
    """A subscription a shop cannot have; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_url(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise WebhookRejected("url", "required, an http or https address")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRejected("url", f"at most {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRejected("url", f"{url!r} is not an http or https address")
    if parts.username or parts.password:
        raise WebhookRejected("url", "must not carry a user or password")
    try:
        _ = parts.port
    except ValueError:
        raise WebhookRejected("url", "the port is not a number in 0-65535") from None
    if any(ord(c) <= 0x20 for c in url):
        raise WebhookRejected("url", "must not hold spaces or control characters")
    return url


def check_event_types(event_types: object, offered: Iterable[str]) -> tuple[str, ...]:
    if not isinstance(event_types, list) or not event_types:
        raise WebhookRejected("event_types", "required, a non-empty list of event types")
    known = set(offered)
    chosen: list[str] = []
    for i, event_type in enumerate(event_types):
        if not isinstance(event_type, str):
            raise WebhookRejected(f"event_types[{i}]", "an event type name")
        # the names a shop posts to /v1/events ("service.completed") name the same events
        if event_type not in known and f"regulars.{event_type}.v1" in known:
            event_type = f"regulars.{event_type}.v1"
        if event_type not in known:
            raise WebhookRejected(
                f"event_types[{i}]",
                f"{event_type!r} is not an event type; GET /v1/webhooks/event-types lists them",
            )
        if event_type not in chosen:
            chosen.append(event_type)
    return tuple(chosen)


def check_description(description: object) -> str:
    if description is None:
        return ""
    if not isinstance(description, str):
        raise WebhookRejected("description", "a string")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise WebhookRejected("description", f"at most {MAX_DESCRIPTION_LENGTH} characters")
    return description


def retry_delay(
    attempts: int, schedule: Sequence[timedelta], rng: random.Random | None = None
) -> timedelta | None:
    """How long to wait after the ``attempts``-th failed try; None once the ladder is used."""
    if attempts < 1 or attempts > len(schedule):
        return None
    wait = schedule[attempts - 1]
    draw = (rng or random).uniform(-JITTER, JITTER)
    return wait + wait * draw


@dataclass(frozen=True)
class Answer:
    """What one try got: a status code, or why there was none."""

    status_code: int | None
    #: "timeout", "connection", "refused" (an address the operator does not allow)
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    status: DeliveryStatus
    #: when to try again (pending only)
    retry_in: timedelta | None
    #: why the endpoint is switched off now, if it is
    disable: str | None
    #: whether the endpoint is answering (clears its failing streak)
    healthy: bool


def judge(
    answer: Answer,
    *,
    attempts: int,
    schedule: Sequence[timedelta],
    failing_since: datetime | None,
    now: datetime,
    rng: random.Random | None = None,
) -> Verdict:
    """What the ``attempts``-th try's answer means for the delivery and its endpoint."""
    code = answer.status_code
    if code is not None and 200 <= code < 300:
        return Verdict("delivered", None, None, healthy=True)
    if code == 410:
        return Verdict("failed", None, "the endpoint answered 410 Gone", healthy=False)
    failing_for = now - failing_since if failing_since is not None else timedelta(0)
    disable = (
        f"the endpoint has failed for {DISABLE_AFTER.days} days"
        if failing_for >= DISABLE_AFTER
        else None
    )
    retryable = (code is None and answer.error != "refused") or code == 429 or (code or 0) >= 500
    if not retryable:
        return Verdict("failed", None, disable, healthy=False)
    wait = retry_delay(attempts, schedule, rng)
    if wait is None:
        return Verdict("failed", None, disable, healthy=False)
    return Verdict("pending", wait, disable, healthy=False)


def address_allowed(
    address: str, allowed: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """Whether a resolved address may be sent to: public ones, and what the operator allows.

    Loopback, private, link-local (the cloud metadata service at 169.254.169.254 among
    them), multicast, reserved and unspecified addresses reach the shop's own network or
    ours, never an integrator's endpoint.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed):
        return True
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``REGULARS_WEBHOOK_ALLOWED_NETWORKS``: comma-separated CIDRs."""
    networks = []
    for part in text.split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not a network such as 10.0.0.0/8") from None
    return tuple(networks)


def cloud_event(
    *,
    event_id: uuid.UUID,
    event_type: str,
    source: str,
    time: datetime,
    subject: str | None,
    shop_id: str,
    data: Mapping[str, Any],
    correlation_id: str,
    causation_id: str | None,
    traceparent: str | None = None,
) -> dict[str, Any]:
    """The event in CloudEvents structured JSON mode, with our extension attributes and
    the Distributed Tracing extension's ``traceparent`` (the receiver may continue it)."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event_id),
        "source": source,
        "type": event_type,
        "time": time.isoformat(),
        "datacontenttype": "application/json",
        "shopid": shop_id,
        "correlationid": correlation_id,
        "data": dict(data),
    }
    if subject is not None:
        body["subject"] = subject
    if causation_id is not None:
        body["causationid"] = causation_id
    if traceparent is not None:
        body["traceparent"] = traceparent
    return body


def signing_secrets(
    secret: str, previous: str | None, previous_until: datetime | None, now: datetime
) -> list[str]:
    """The secrets a delivery is signed with: the current one, and the old one for a day."""
    if previous is not None and previous_until is not None and now < previous_until:
        return [secret, previous]
    return [secret]
