"""A text a customer sent to our number (the SMS provider's inbound webhook): whose reply
it is. Pure.

Every shop texts from the one sender number the SMS account has (``SMS_FROM``), so the
number a text was sent to does not tell the shop; the customer's own number, among the
shops that texted it, does. A STOP to that number blocks it at the carrier for every shop
that texts from it, so an opt-out (and the START that lifts it) speaks to each of them;
anything else is an answer to the last text the customer got, so it goes to that shop.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from regulars_shop import compliance

#: the longest reply CustomerReplied carries (a provider joins a long text's parts)
MAX_REPLY = 10_000


@dataclass(frozen=True)
class InboundText:
    """One text as the provider posted it; ``message_sid`` is its id (a retry repeats it)."""

    message_sid: str
    account_sid: str
    from_number: str
    to_number: str
    body: str


@dataclass(frozen=True)
class KnownNumber:
    """A shop's customer whose number the text came from."""

    shop_id: uuid.UUID
    customer_id: str
    #: our last text to them (None: this shop never texted them)
    last_texted_at: datetime | None
    #: their last text to us was an opt-out: a bare YES now answers its confirmation
    awaiting_opt_out_answer: bool = False


def meaning_of(body: str, known: Sequence[KnownNumber]) -> compliance.ReplyClass:
    after_confirmation = any(k.awaiting_opt_out_answer for k in known)
    return compliance.classify_reply(body, after_confirmation=after_confirmation)


def addressed_to(body: str, known: Sequence[KnownNumber]) -> list[KnownNumber]:
    """The customers (of which shops) this text is a reply from; empty when it cannot be
    told (kept as unmatched, never guessed)."""
    if not body.strip():
        return []
    texted = sorted(
        (k for k in known if k.last_texted_at is not None),
        key=lambda k: (k.last_texted_at, str(k.shop_id), k.customer_id),
        reverse=True,
    )
    if meaning_of(body, known) in ("opt_out", "opt_in"):
        # The carrier stops (and restarts) the number for every shop on our sender;
        # a customer who was never texted is still spared texts from any shop.
        return list(texted or known)
    if texted:
        latest = texted[0]
        return [latest]
    return list(known) if len(known) == 1 else []
