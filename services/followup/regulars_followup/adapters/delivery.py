"""The one failure type every outbound channel (email, SMS) raises.

Callers decide from ``permanent`` alone whether to retry: a permanent failure will fail
the same way for the same message and address (bad address, recipient refused or
unsubscribed at the carrier), so the message is marked failed and never retried; a
transient one (connection, timeout, 4xx "try later", our own misconfiguration) is retried
with backoff and ends in the dead-letter topic if it never clears.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A message could not be handed to the provider.

    ``code`` is the provider's own code when there is one (SMTP reply code such as 550,
    Twilio error code such as 21610), so a caller can act on specific ones, e.g. record
    a carrier-level opt-out.
    """

    def __init__(self, permanent: bool, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.message = message
        self.code = code

    def __repr__(self) -> str:
        return (
            f"DeliveryError(permanent={self.permanent!r}, message={self.message!r}, "
            f"code={self.code!r})"
        )


class UnconfirmedDelivery(DeliveryError):
    """The provider may have the message and did not say: the request went out and no
    answer came (a timeout, a dropped connection, a 5xx after the body was sent).

    Neither SMTP nor the SMS provider has a token that makes sending again safe, so the
    caller must not simply retry: a text is looked up at the provider once the request
    is surely over; an email is recorded as not confirmed.
    """

    def __init__(self, message: str) -> None:
        super().__init__(False, message)
