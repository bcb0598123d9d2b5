"""The consent ledger's rules: what a customer record, a consent change or a reply does to
a channel's consent. Pure; every change is kept (the ledger is the audit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regulars_shop import compliance

CHANNELS = ("sms", "email", "call")


@dataclass(frozen=True)
class ConsentChange:
    channel: str
    granted: bool
    source: str  # customer.upserted | consent.changed | reply
    text: str | None = None


def from_customer_record(
    consent: dict[str, Any] | None, current: dict[str, Any]
) -> list[ConsentChange]:
    """Only what differs from the ledger's current state: a re-sent record changes nothing."""
    changes = []
    for channel, granted in (consent or {}).items():
        if (
            channel in CHANNELS
            and isinstance(granted, bool)
            and current.get(channel) is not granted
        ):
            changes.append(ConsentChange(channel, granted, "customer.upserted"))
    return changes


@dataclass(frozen=True)
class ReplyMeaning:
    kind: str  # opt_out | opt_in | help | other
    changes: list[ConsentChange]


def from_reply(text: str, channel: str, *, after_confirmation: bool = False) -> ReplyMeaning:
    kind = compliance.classify_reply(text, after_confirmation=after_confirmation)
    snippet = text[:500]
    if kind == "opt_out":
        revoked = compliance.opt_out_channels(text, channel) or {channel}
        return ReplyMeaning(
            kind, [ConsentChange(c, False, "reply", snippet) for c in sorted(revoked)]
        )
    if kind == "opt_in":
        return ReplyMeaning(kind, [ConsentChange(channel, True, "reply", snippet)])
    return ReplyMeaning(kind, [])


#: the SMS provider's refusal because the number texted STOP to our sender at the carrier
#: (Twilio 21610): the customer opted out where we did not hear it (a webhook down, or the
#: provider's own keyword handling), and the ledger should say so
CARRIER_OPT_OUT_CODES = frozenset({21610})


def from_carrier_refusal(code: int | None, current: dict[str, Any]) -> ConsentChange | None:
    """An SMS opt-out the carrier holds and the ledger does not, yet."""
    if code not in CARRIER_OPT_OUT_CODES or current.get("sms") is False:
        return None
    return ConsentChange("sms", False, "carrier", f"the provider refused the text ({code})")
