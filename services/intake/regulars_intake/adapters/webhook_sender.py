"""Sending one webhook delivery: Standard Webhooks headers, SSRF guard, a 10 s budget.

The host is resolved here, at send time, and every address it resolves to is checked;
the request then goes to the checked address itself (the name kept for ``Host`` and TLS
SNI), so a name that resolves differently a moment later cannot lead us elsewhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import urlsplit, urlunsplit

import aiosmtplib
import httpx
import orjson
from regulars_runtime.smtp import parse_smtp_url
from standardwebhooks.webhooks import Webhook as Signer

from ..domain.webhooks import SEND_TIMEOUT_SECONDS, Answer, address_allowed
from ..webhook_handlers import ClaimedDelivery, OwnerNotice

log = logging.getLogger(__name__)

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
USER_AGENT = "Regulars-Webhooks/1.0"


def signed_headers(claimed: ClaimedDelivery, body: str, now: datetime) -> dict[str, str]:
    """webhook-id is the delivery's, the same on every try and replay; one signature per
    secret still in use, space-separated, as Standard Webhooks allows during a rotation."""
    message_id = f"msg_{claimed.id.hex}"
    signatures = " ".join(
        Signer(secret).sign(msg_id=message_id, timestamp=now, data=body)
        for secret in claimed.secrets
    )
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/cloudevents+json; charset=utf-8",
        "user-agent": USER_AGENT,
    }


class WebhookSender:
    def __init__(self, allowed: Networks = (), timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        self.allowed = tuple(allowed)
        self.timeout = timeout
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False, trust_env=False
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, claimed: ClaimedDelivery) -> Answer:
        body = orjson.dumps(claimed.body).decode()
        headers = signed_headers(claimed, body, datetime.now(UTC))
        try:
            async with asyncio.timeout(self.timeout):
                return await self._send(claimed.url, body, headers)
        except TimeoutError:
            return Answer(None, "timeout")

    async def _send(self, url: str, body: str, headers: dict[str, str]) -> Answer:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            return Answer(None, "connection")
        addresses = [str(info[4][0]) for info in found]
        refused = [a for a in addresses if not address_allowed(a, self.allowed)]
        if refused or not addresses:
            return Answer(None, "refused")
        address = addresses[0]
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        host_header = parts.netloc.rpartition("@")[2]
        try:
            response = await self.client.post(
                target,
                content=body.encode(),
                headers={**headers, "host": host_header},
                extensions={"sni_hostname": host} if parts.scheme == "https" else {},
            )
        except httpx.TimeoutException:
            return Answer(None, "timeout")
        except httpx.HTTPError:
            return Answer(None, "connection")
        return Answer(response.status_code)


class OwnerMail:
    """Tells a shop's owners that one of their webhook endpoints was switched off."""

    def __init__(self, smtp_url: str, sender: str) -> None:
        self.smtp = parse_smtp_url(smtp_url)
        self.sender = sender

    async def send(self, notice: OwnerNotice) -> None:
        if not notice.emails:
            return
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(notice.emails)
        message["Subject"] = "A webhook endpoint of your shop was switched off"
        message.set_content(
            f"Regulars stopped sending events to {notice.url}: {notice.reason}.\n\n"
            f"Deliveries wait for it. Once the endpoint answers again, switch it back on with"
            f' PATCH /v1/webhooks/{notice.webhook_id} {{"enabled": true}}; replay what it'
            f" missed with POST /v1/webhooks/{notice.webhook_id}/replay.\n"
        )
        await aiosmtplib.send(
            message,
            hostname=self.smtp.host,
            port=self.smtp.port,
            username=self.smtp.username,
            password=self.smtp.password,
            use_tls=self.smtp.use_tls,
            start_tls=self.smtp.start_tls,
            timeout=30,
        )
