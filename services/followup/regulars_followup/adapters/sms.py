"""SMS through a Twilio-compatible REST API (Twilio itself, or a local stand-in).

Only the HTTP boundary lives here: validating the number, one POST, and sorting the
outcome into "sent", "never retry" and "retry later" (see ``DeliveryError``).
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from .delivery import DeliveryError

#: Twilio error for a recipient who texted STOP to our sender at the carrier level: the
#: caller should record it as an SMS opt-out, not just a failed message.
TWILIO_UNSUBSCRIBED = 21610

# Loose E.164: a plus, a non-zero country-code digit, 8-15 digits in all. Separators a
# human typed (spaces, dashes, dots, parentheses) are dropped first; anything else fails.
_E164 = re.compile(r"\+[1-9]\d{7,14}")
_SEPARATORS = re.compile(r"[\s\-.()]")

# 4xx statuses that are about timing, not about the message: retrying can succeed.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})
# 401: our credentials are wrong. Not the customer's fault: marking the message failed
# forever would lose it; retrying lets it go once an operator fixes the secret (or it
# ends in the dead-letter topic, where it can be replayed).
_CONFIG_4XX = frozenset({401})


def normalize_e164(number: str) -> str:
    """``+1 (555) 010-2030`` -> ``+15550102030``; ValueError when it is not E.164."""
    compact = _SEPARATORS.sub("", number)
    if not _E164.fullmatch(compact):
        raise ValueError(f"not an E.164 phone number (+ and 8-15 digits): {number!r}")
    return compact


class TwilioCompatibleSms:
    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: str,
        from_number: str,
        client: httpx.AsyncClient | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("account_sid and auth_token are required")
        if not from_number:
            raise ValueError("from_number is required")
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        # From may be a short code or an alphanumeric sender id, so it is not held to E.164.
        self._from = from_number
        self._client = client
        self._owns_client = client is None
        self._timeout = timeout

    def __repr__(self) -> str:
        # The auth token never appears in logs or tracebacks that print the adapter.
        return f"TwilioCompatibleSms(url={self._url!r}, from_number={self._from!r})"

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client if this adapter made it (a client passed in is the caller's)."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self, *, to: str, body: str, idempotency_key: str, status_callback: str | None = None
    ) -> str:
        """Hand one text to the provider; returns its message sid.

        ``status_callback``: where the provider posts what becomes of the text (sent,
        delivered, undelivered, failed), our ``/hooks/sms/status``.

        The idempotency token makes a retry after an ambiguous failure (timeout after the
        provider had accepted the request) safe: the provider answers the retry with the
        first message instead of texting the customer twice.
        """
        try:
            recipient = normalize_e164(to)
        except ValueError as exc:
            raise DeliveryError(True, str(exc)) from None
        if not body:
            raise DeliveryError(True, "empty message body")
        if not idempotency_key:
            raise ValueError("idempotency_key is required")
        form = {"To": recipient, "From": self._from, "Body": body}
        if status_callback:
            form["StatusCallback"] = status_callback
        try:
            response = await self._http().post(
                self._url,
                data=form,
                auth=self._auth,
                headers={"I-Twilio-Idempotency-Token": idempotency_key},
            )
        except httpx.TransportError as exc:
            # Covers connect errors and every timeout, including one after the request
            # went out: retrying is safe because of the idempotency token.
            raise DeliveryError(False, f"SMS provider unreachable: {type(exc).__name__}") from exc
        return _sid_or_raise(response)


def _sid_or_raise(response: httpx.Response) -> str:
    status = response.status_code
    payload = _json(response)
    if 200 <= status < 300:
        sid = payload.get("sid") if payload else None
        if not isinstance(sid, str) or not sid:
            # Accepted but unreadable: retrying with the same token returns the same
            # message rather than a second text, so treat it as transient.
            raise DeliveryError(False, f"SMS provider answered {status} without a message sid")
        return sid
    code = payload.get("code") if payload else None
    provider_code = code if isinstance(code, int) else None
    message = payload.get("message") if payload else None
    detail = message if isinstance(message, str) and message else response.reason_phrase
    text = f"SMS provider answered {status}" + (f" ({provider_code})" if provider_code else "")
    text += f": {detail}"
    permanent = 400 <= status < 500 and status not in _RETRYABLE_4XX | _CONFIG_4XX
    raise DeliveryError(permanent, text, code=provider_code)


def _json(response: httpx.Response) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
