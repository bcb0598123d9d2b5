"""A customer as followup knows them: how to reach them, and what they consented to. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    state: str | None = None
    timezone: str | None = None
    birthday: date | None = None
    #: True granted, False revoked, absent never said (the consent ledger's current state)
    consent: dict[str, bool | None] = field(default_factory=dict)
    sms_opted_out_at: datetime | None = None
    #: the last SMS revoked consent: a bare "yes" now answers the confirmation
    awaiting_opt_out_answer: bool = False

    def consents_to(self, channel: str) -> bool | None:
        return self.consent.get(channel)
