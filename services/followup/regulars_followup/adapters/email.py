"""Email through any SMTP server (the embedded one in dev, a relay or ESP in production).

URL forms (``SMTP_URL``):

- ``smtp://host:port``: plain SMTP (a local relay or the embedded dev server);
- ``smtp+starttls://user:pass@host:port`` or ``smtp://...?starttls=1``: upgrade with
  STARTTLS before anything else is said (port 587 by default);
- ``smtps://user:pass@host:port``: TLS from the first byte (port 465 by default).

User and password are percent-decoded. The password is kept out of ``repr`` and of every
error message: log the sender freely.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings
from regulars_runtime.smtp import SmtpSettings, parse_smtp_url

from .delivery import DeliveryError, UnconfirmedDelivery

__all__ = ["SmtpSender", "SmtpSettings", "list_unsubscribe", "make_message_id", "parse_smtp_url"]

ONE_CLICK = "List-Unsubscribe=One-Click"

# aiosmtplib flattens EmailMessage objects with the stock SMTP policy (78-column folding),
# which turns a long List-Unsubscribe URL into RFC 2047 encoded-words that no mailbox
# provider will follow. We flatten ourselves, folding only at the RFC 5322 hard limit,
# and with 7-bit transfer encodings so any server takes the body without 8BITMIME.
_POLICY = email.policy.SMTP.clone(max_line_length=998, cte_type="7bit")
_POLICY_UTF8 = email.policy.SMTPUTF8.clone(max_line_length=998)

# Headers this adapter owns: a caller setting them would make the message lie about
# itself (CAN-SPAM wants truthful headers) or break the MIME structure.
_RESERVED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "message-id",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "list-unsubscribe-post",
    }
)
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII except ':'
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_MSG_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
_UNSUB_ENTRY = re.compile(r"<((?:https?|mailto):[^<>\s]+)>")


def make_message_id(key: str, domain: str) -> str:
    """``<key@domain>``, the same for the same key, so a retried send is recognisable.

    A key that is not a valid dot-atom (idempotency keys often hold ':' or spaces) is
    replaced by its SHA-256, which is just as stable.
    """
    if _MSG_ID.fullmatch(key):
        return key
    left = key if _DOT_ATOM.fullmatch(key) and len(key) <= 128 else _digest(key)
    return f"<{left}@{domain}>"


def _digest(key: str) -> str:
    return "r" + hashlib.sha256(key.encode()).hexdigest()[:40]


def list_unsubscribe(url: str | None = None, mailto: str | None = None) -> str:
    """An RFC 2369 ``List-Unsubscribe`` value: ``<https://...>, <mailto:...>``."""
    entries = []
    if url:
        entries.append(f"<{url}>")
    if mailto:
        entries.append(f"<{mailto if mailto.startswith('mailto:') else 'mailto:' + mailto}>")
    if not entries:
        raise ValueError("list_unsubscribe needs a URL or a mailto address")
    return _normalize_unsubscribe(", ".join(entries))


def _normalize_unsubscribe(value: str) -> str:
    """Accept a bare URI or a ``<uri>, <uri>`` list; return the bracketed list."""
    value = value.strip()
    if "<" not in value:
        value = f"<{value}>"
    entries = [e.strip() for e in value.split(">,")]
    entries = [e if e.endswith(">") else e + ">" for e in entries]
    for entry in entries:
        if not _UNSUB_ENTRY.fullmatch(entry):
            raise ValueError(
                f"List-Unsubscribe entries must be <https://...> or <mailto:...>, got {entry!r}"
            )
    joined = ", ".join(entries)
    if len(joined) > 900:
        # Longer would have to be folded inside a URI or encoded: one-click would break.
        raise ValueError("List-Unsubscribe value is too long (over 900 characters)")
    return joined


# ``headers`` may name the unsubscribe targets instead of spelling the header out:
# {"List-Unsubscribe-URL": "https://...", "List-Unsubscribe-Mailto": "unsub@shop.example"}.
_UNSUBSCRIBE_PARTS: dict[str, Callable[[str], str]] = {
    "list-unsubscribe-url": lambda v: list_unsubscribe(url=v),
    "list-unsubscribe-mailto": lambda v: list_unsubscribe(mailto=v),
}


class SmtpSender:
    def __init__(self, smtp_url: str, sender: str, timeout: float = 10) -> None:
        self._settings = parse_smtp_url(smtp_url)
        _, address = parseaddr(sender)
        if "@" not in address or any(c in sender for c in "\r\n"):
            raise ValueError(f"sender must be an email address, got {sender!r}")
        self._sender = sender
        self._envelope_from = address
        self._domain = address.rpartition("@")[2]
        self._timeout = timeout

    def __repr__(self) -> str:
        s = self._settings
        user = f"{s.username}:***@" if s.username else ""
        scheme = "smtps" if s.use_tls else "smtp+starttls" if s.start_tls else "smtp"
        return f"SmtpSender({scheme}://{user}{s.host}:{s.port}, sender={self._sender!r})"

    def build(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str | None,
        message_id: str,
        headers: dict[str, str],
    ) -> EmailMessage:
        """The message ``send`` would hand over; separate so it can be inspected."""
        recipient = _recipient(to)
        msg = EmailMessage(policy=_POLICY if recipient.isascii() else _POLICY_UTF8)
        msg["From"] = self._sender
        msg["To"] = to
        msg["Subject"] = _one_line("subject", subject)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_message_id(message_id, self._domain)
        unsubscribe: list[str] = []
        for name, value in headers.items():
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"not a valid header name: {name!r}")
            key = name.lower()
            if key in _RESERVED:
                raise ValueError(f"header {name} is set by the sender, not by the caller")
            value = _one_line(name, value)
            if key == "list-unsubscribe":
                unsubscribe.append(_normalize_unsubscribe(value))
            elif key in _UNSUBSCRIBE_PARTS:
                # Convenience keys, never sent as headers: folded into List-Unsubscribe.
                unsubscribe.append(_UNSUBSCRIBE_PARTS[key](value))
            else:
                msg[name] = value
        if unsubscribe:
            value = _normalize_unsubscribe(", ".join(unsubscribe))
            msg["List-Unsubscribe"] = value
            # RFC 8058: one-click only with an HTTPS URI (the POST goes there).
            if "<https://" in value:
                msg["List-Unsubscribe-Post"] = ONE_CLICK
        msg.set_content(text, cte="quoted-printable")
        if html is not None:
            msg.add_alternative(html, subtype="html", cte="quoted-printable")
        return msg

    async def send(
        self,
        *,
        to: str,
        subject: str,
        text: str,
        html: str | None,
        message_id: str,
        headers: dict[str, str],
        before_data: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Hand one message to the SMTP server, or raise ``DeliveryError``.

        ``before_data`` is awaited once the server took the recipient and before DATA:
        until then nothing can reach the recipient, after it the server may have the
        message even when no answer comes (:class:`UnconfirmedDelivery`). What it raises
        ends the send with nothing given to the server.

        ``message_id``: the idempotency key (or a ready ``<id@domain>``); the Message-ID
        header derives from it, so a retry carries the same one. ``headers``: extra
        headers (Reply-To, ...); the unsubscribe target goes in as ``List-Unsubscribe``
        (a bare URI or ``<uri>, <uri>``) or as ``List-Unsubscribe-URL`` /
        ``List-Unsubscribe-Mailto``; an HTTPS one adds the RFC 8058 one-click header.
        A header that would override From, To, Subject, Message-ID, Date or the MIME
        structure, or contains a line break, is a ValueError (a bug, not a delivery).
        """
        try:
            recipient = _recipient(to)
        except ValueError as exc:
            raise DeliveryError(True, str(exc)) from None
        msg = self.build(
            to=to, subject=subject, text=text, html=html, message_id=message_id, headers=headers
        )
        utf8 = not recipient.isascii()
        s = self._settings
        payload = msg.as_bytes(policy=msg.policy)
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            use_tls=s.use_tls,
            start_tls=s.start_tls,
            timeout=self._timeout,
        )
        data_begun = False
        try:
            async with client:
                # The steps of aiosmtplib's sendmail, spelled out so the caller hears of the
                # one moment that matters: after it the server may hold the message.
                options = ["SMTPUTF8"] if utf8 else []
                if utf8 and not client.supports_extension("smtputf8"):
                    raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server")
                if client.supports_extension("size"):
                    size = len(normalize_message_line_endings(payload))
                    options.insert(0, f"size={size}")
                encoding = "utf-8" if utf8 else "ascii"
                await client.mail(self._envelope_from, options=options, encoding=encoding)
                try:
                    await client.rcpt(recipient, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    raise aiosmtplib.SMTPRecipientsRefused([exc]) from exc
                if before_data is not None:
                    try:
                        await before_data()
                    except Exception as exc:
                        raise _CallerStopped from exc
                data_begun = True
                await client.data(payload)
        except _CallerStopped as stopped:
            # the caller's own failure (its database, its lease), not the server's
            assert stopped.__cause__ is not None
            raise stopped.__cause__ from None
        except aiosmtplib.SMTPDataError as exc:
            # The server's own answer to DATA: it refused the message, so it does not have it.
            raise _classify(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            if data_begun and not _answered_after_data(exc):
                raise UnconfirmedDelivery(
                    f"no answer from the SMTP server after the message went out: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            raise _classify(exc) from exc


class _CallerStopped(Exception):
    """What ``before_data`` raised, carried past the SMTP error handling unchanged."""


def _answered_after_data(exc: Exception) -> bool:
    """The server spoke after DATA began (a reply code we can trust), rather than going
    silent or dropping the line while it may have the message."""
    return isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(
        exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError
    )


def _recipient(to: str) -> str:
    _, address = parseaddr(to)
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or any(c in to for c in "\r\n"):
        raise ValueError(f"not an email address: {to!r}")
    return address


def _one_line(name: str, value: str) -> str:
    # A newline in a header value would let text choose its own headers (injection).
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} must be one line")
    return value


def _classify(exc: Exception) -> DeliveryError:
    """Permanent only when the answer is about this recipient or this message.

    A 5xx to RCPT (no such user, mailbox disabled) or to DATA (message refused) will not
    change on retry. Everything else (no connection, timeouts, 4xx "try later", and
    also auth or sender refusals, which are our configuration and not the customer's)
    is transient: the message waits for retry or the dead-letter topic instead of being
    written off.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        first = exc.recipients[0] if exc.recipients else None
        detail = f"{first.code} {first.message}" if first else "all recipients refused"
        return DeliveryError(
            bool(codes) and all(c >= 500 for c in codes),
            f"recipient refused: {detail}",
            code=first.code if first else None,
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        refused = isinstance(exc, aiosmtplib.SMTPRecipientRefused)
        what = "recipient refused" if refused else "message refused"
        return DeliveryError(exc.code >= 500, f"{what}: {exc.code} {exc.message}", code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # The address needs SMTPUTF8 and this server has none: no retry will fix that.
        return DeliveryError(True, f"SMTP server cannot take this address: {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return DeliveryError(False, f"SMTP error {exc.code}: {exc.message}", code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPException):
        return DeliveryError(False, f"SMTP failure: {exc.message}")
    return DeliveryError(False, f"SMTP server unreachable: {type(exc).__name__}: {exc}")
