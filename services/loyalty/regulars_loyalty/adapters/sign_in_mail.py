"""The sign-in email: a link, to a staff address the shop's policy knows."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib
from regulars_runtime.smtp import SmtpSettings

log = logging.getLogger("regulars.loyalty.sign_in")


class SignInMail:
    def __init__(self, smtp: SmtpSettings | None, sender: str, timeout: float = 10.0) -> None:
        self.smtp = smtp
        self.sender = sender
        self.timeout = timeout

    async def send(self, to: str, name: str, shop_name: str, link: str) -> None:
        if self.smtp is None:
            # the link is a credential: it is never logged, even when it cannot be mailed
            log.warning("no SMTP_URL is set: a sign-in link was not mailed")
            return
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = f"Sign in to Regulars for {shop_name}"
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="regulars.local")
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(
            f"Hi {name},\n\n"
            f"Open this link to sign in to {shop_name}'s Regulars console:\n\n{link}\n\n"
            "It works once, for 15 minutes. If you did not ask for it, ignore this email:"
            " nobody can sign in without opening the link.\n"
        )
        try:
            await aiosmtplib.send(
                message,
                hostname=self.smtp.host,
                port=self.smtp.port,
                username=self.smtp.username,
                password=self.smtp.password,
                use_tls=self.smtp.use_tls,
                start_tls=self.smtp.start_tls,
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.error("a sign-in email could not be sent", extra={"error": type(exc).__name__})
