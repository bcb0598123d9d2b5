"""A customer as followup knows them: how to reach them, what they consented to, and the
lifecycle stage loyalty gave them. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime

from regulars_events.catalogue import LifecycleStage


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
    #: loyalty's word for where the customer stands (lapsed, lost...): the product has one
    #: definition of each stage, and it is loyalty's
    stage: LifecycleStage | None = None
    #: the time of the LifecycleStageChanged that set ``stage``
    stage_at: datetime | None = None

    def consents_to(self, channel: str) -> bool | None:
        return self.consent.get(channel)

    def moved_to(
        self, to_stage: LifecycleStage, from_stage: LifecycleStage | None, at: datetime
    ) -> Customer | None:
        """The customer in ``to_stage`` as of ``at``; None when the stage held is newer.

        Stage changes travel on their own topic and can come again or out of order, so the
        event's time decides: an older change never moves the stage back. At the same
        time, only a change from the stage held follows it (a redelivered one does not).
        """
        if self.stage_at is not None:
            if at < self.stage_at:
                return None
            if at == self.stage_at and from_stage != self.stage:
                return None
        return replace(self, stage=to_stage, stage_at=at)
