"""SMS through a Twilio-compatible REST API (Twilio itself, or a local stand-in).

Only the HTTP boundary lives here: validating the number, one POST, and sorting the
outcome into "sent", "never retry" and "retry later" (see ``DeliveryError``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from ..domain.messages import text_digest
from .delivery import DeliveryError, UnconfirmedDelivery

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


#: how far the provider's clock may be behind the database's when an interrupted text is
#: looked up (its creation time is compared with the claim's)
CLOCK_SKEW = timedelta(minutes=2)
#: a lookup reads at most this many pages of 100 (one number's texts of a day or two)
MAX_LOOKUP_PAGES = 20


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
        self._base = base_url.rstrip("/")
        self._url = f"{self._base}/2010-04-01/Accounts/{account_sid}/Messages.json"
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

    async def send(self, *, to: str, body: str, status_callback: str | None = None) -> str:
        """Hand one text to the provider; returns its message sid.

        ``status_callback``: where the provider posts what becomes of the text (sent,
        delivered, undelivered, failed), our ``/hooks/sms/status``.

        The provider's API has no idempotency token for creating a message (Twilio's
        ``I-Twilio-Idempotency-Token`` is a header on the webhooks it sends, not one it
        reads): every POST it takes is a text. So a failure after the request went out
        (a timeout, a dropped connection, a 5xx) is :class:`UnconfirmedDelivery`, to be
        looked up with :meth:`sent_since` once the request is over, never simply retried.
        """
        try:
            recipient = normalize_e164(to)
        except ValueError as exc:
            raise DeliveryError(True, str(exc)) from None
        if not body:
            raise DeliveryError(True, "empty message body")
        form = {"To": recipient, "From": self._from, "Body": body}
        if status_callback:
            form["StatusCallback"] = status_callback
        try:
            response = await self._http().post(self._url, data=form, auth=self._auth)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the provider: trying again later is safe.
            raise DeliveryError(False, f"SMS provider unreachable: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise UnconfirmedDelivery(
                f"no answer from the SMS provider after the text went out: {type(exc).__name__}"
            ) from exc
        return _sid_or_raise(response)

    async def sent_since(self, *, to: str, body_sha256: str, since: datetime) -> list[str]:
        """The sids of texts from our number to ``to`` whose body has the SHA-256
        ``body_sha256``, created at or after ``since`` (newest first): what the provider
        holds of an interrupted send.

        The provider's list (``GET Messages.json?To=&From=&DateSent>=``, paged by
        ``next_page_uri``) is the one thing it guarantees: a message exists there once
        its POST was answered. A text still queued has no DateSent yet, so when the day's
        sent texts hold none, the number's texts are read again without it. A failure to
        ask raises :class:`DeliveryError` (transient): the text is then not re-sent.
        """
        recipient = normalize_e164(to)
        query = {"To": recipient, "From": self._from, "PageSize": "100"}
        day = since.astimezone(UTC).date().isoformat()
        for params in ({**query, "DateSent>": day}, query):
            found = [
                (created, sid)
                for created, sid in await self._matching(params, recipient, body_sha256)
                if created >= since - CLOCK_SKEW
            ]
            if found:
                return [sid for _created, sid in sorted(found, reverse=True)]
        return []

    async def _matching(
        self, params: dict[str, str], recipient: str, body_sha256: str
    ) -> list[tuple[datetime, str]]:
        """Every page of the list for ``params``: (created, sid) of our texts with that body."""
        url, query = self._url, dict(params)
        query_of_page: dict[str, str] | None = query
        found: list[tuple[datetime, str]] = []
        for _page in range(MAX_LOOKUP_PAGES):
            try:
                response = await self._http().get(url, params=query_of_page, auth=self._auth)
            except httpx.TransportError as exc:
                raise DeliveryError(
                    False, f"SMS provider unreachable for a lookup: {type(exc).__name__}"
                ) from exc
            page = _json(response)
            if response.status_code != 200 or page is None:
                status = response.status_code
                raise DeliveryError(False, f"SMS provider answered {status} to a lookup")
            for item in page.get("messages") or []:
                if not isinstance(item, dict) or _digest(item.get("body")) != body_sha256:
                    continue
                if item.get("to") != recipient or item.get("direction") == "inbound":
                    continue
                created = _provider_time(item.get("date_created"))
                sid = item.get("sid")
                if isinstance(sid, str) and sid and created is not None:
                    found.append((created, sid))
            following = page.get("next_page_uri")
            if not isinstance(following, str) or not following:
                return found
            # the next page's address carries its query (an empty one given here drops it)
            url, query_of_page = f"{self._base}{following}", None
        raise DeliveryError(False, f"SMS provider lookup ran over {MAX_LOOKUP_PAGES} pages")


def _digest(body: object) -> str | None:
    return text_digest(body) if isinstance(body, str) else None


def _provider_time(value: object) -> datetime | None:
    """The provider's RFC 2822 time (``Wed, 02 Dec 2026 15:20:51 +0000``)."""
    if not isinstance(value, str):
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _sid_or_raise(response: httpx.Response) -> str:
    status = response.status_code
    payload = _json(response)
    if 200 <= status < 300:
        sid = payload.get("sid") if payload else None
        if not isinstance(sid, str) or not sid:
            # Accepted but unreadable: the text may exist, so it is looked up, not re-sent.
            raise UnconfirmedDelivery(f"SMS provider answered {status} without a message sid")
        return sid
    if status >= 500:
        # The provider's own trouble after it read the request: it may have made the text.
        raise UnconfirmedDelivery(f"SMS provider answered {status}: {response.reason_phrase}")
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
