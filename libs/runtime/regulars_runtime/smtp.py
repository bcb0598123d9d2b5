"""Where an SMTP server is, from one URL (``SMTP_URL``); every service that mails reads it so.

URL forms:

- ``smtp://host:port``: plain SMTP (a local relay or the embedded dev server);
- ``smtp+starttls://user:pass@host:port`` or ``smtp://...?starttls=1``: upgrade with
  STARTTLS before anything else is said (port 587 by default);
- ``smtps://user:pass@host:port``: TLS from the first byte (port 465 by default).

User and password are percent-decoded. The password is kept out of ``repr`` and of every
error message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    start_tls: bool = False


_DEFAULT_PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_smtp_url(url: str) -> SmtpSettings:
    """Settings from an ``smtp://``, ``smtp+starttls://`` or ``smtps://`` URL.

    Errors name the problem, never echo the URL: it may hold the password.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"SMTP URL scheme must be smtp, smtp+starttls or smtps, not {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ValueError("SMTP URL has no host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError("SMTP URL port is not a number in 0-65535") from None
    start_tls = scheme == "smtp+starttls"
    flag = parse_qs(parts.query).get("starttls", [None])[-1]
    if flag is not None:
        if flag.lower() in _TRUE:
            start_tls = True
        elif flag.lower() in _FALSE:
            start_tls = False
        else:
            raise ValueError("SMTP URL starttls= must be 1 or 0")
    use_tls = scheme == "smtps"
    if use_tls and start_tls:
        raise ValueError("smtps is TLS from the start; starttls does not apply")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is not None and username is None:
        raise ValueError("SMTP URL has a password but no user")
    return SmtpSettings(parts.hostname, port, username, password, use_tls, start_tls)
