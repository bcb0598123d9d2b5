"""followup's reactions to events, timers and commands: the maps the message bus routes by."""

from __future__ import annotations

from regulars_events.catalogue import (
    ConsentChanged,
    CustomerAtRisk,
    CustomerReplied,
    CustomerUpserted,
    LifecycleStageChanged,
    RecoveryCaseEscalated,
    RecoveryCaseOpened,
    RecoveryCaseResolved,
    RecoveryCaseSlaAtRisk,
    ReferralRequested,
    ReviewRequested,
    ServiceCompleted,
    ServiceReopened,
    ServiceVoided,
    ShopPolicyChanged,
    StaffPraised,
    SurveyRequested,
)
from regulars_runtime.bus import Batch, Handler, Received

from . import lifecycle, outreach, recovery, sweep, tasks, texts
from .base import SCHEMA, Deps, FollowUpUnitOfWork

EVENTS: dict[str, Handler[FollowUpUnitOfWork, Deps]] = {
    CustomerUpserted.type: outreach.on_customer_upserted,
    ConsentChanged.type: outreach.on_consent_changed,
    CustomerReplied.type: outreach.on_customer_replied,
    ServiceVoided.type: tasks.on_service_voided,
    ServiceReopened.type: tasks.on_service_reopened,
    SurveyRequested.type: outreach.on_survey_requested,
    RecoveryCaseOpened.type: recovery.on_case_opened,
    RecoveryCaseSlaAtRisk.type: recovery.on_case_at_risk,
    RecoveryCaseEscalated.type: recovery.on_case_escalated,
    RecoveryCaseResolved.type: recovery.on_case_resolved,
    ReviewRequested.type: recovery.on_review_requested,
    ReferralRequested.type: recovery.on_referral_requested,
    StaffPraised.type: recovery.on_staff_praised,
    LifecycleStageChanged.type: lifecycle.on_stage_changed,
    CustomerAtRisk.type: lifecycle.on_customer_at_risk,
}

TOPICS = [
    "regulars.shop",
    "regulars.customer",
    "regulars.consent",
    "regulars.service",
    "regulars.survey",
    "regulars.recovery_case",
    "regulars.review",
    "regulars.referral",
    "regulars.staff",
    "regulars.lifecycle",
]


async def on_shop_policy_changed(
    message: Received[ShopPolicyChanged], uow: FollowUpUnitOfWork, deps: Deps
) -> None:
    """A shop's (new) policy: its monthly database check goes by the new timezone."""
    await sweep.plan_next_check(uow, message.shop_id, deps.clock())


EVENTS[ShopPolicyChanged.type] = on_shop_policy_changed

#: runs of visits (each repair order once) are scheduled set-based
BATCHES: dict[str, Batch[FollowUpUnitOfWork, Deps]] = {
    ServiceCompleted.type: Batch(
        tasks.on_services_completed,
        key=lambda m: (m.envelope.shop_id, m.event.repair_order_id),
    )
}

#: commands from the API, the CLI and the dispatcher, each in a transaction of its own
COMMANDS: dict[type, Handler[FollowUpUnitOfWork, Deps]] = {
    tasks.RecordCallAttempt: tasks.record_call_attempt,
    **outreach.COMMANDS,
    **texts.COMMANDS,
}

TIMERS: dict[str, Handler[FollowUpUnitOfWork, Deps]] = {
    outreach.MESSAGE_DUE: outreach.on_message_due,
    tasks.FOLLOW_UP_MISSED: tasks.on_missed_timer,
    sweep.MONTHLY_CHECK: sweep.on_monthly_check_timer,
    sweep.MONTHLY_CHECK_PAGE: sweep.on_monthly_check_page,
    recovery.RECOVERY_CHECK_IN: recovery.on_check_in_timer,
}

#: each a page of the monthly check: a transaction of its own, never one batch of many
TIMERS_ALONE = frozenset({sweep.MONTHLY_CHECK, sweep.MONTHLY_CHECK_PAGE})


__all__ = [
    "BATCHES",
    "COMMANDS",
    "EVENTS",
    "SCHEMA",
    "TIMERS",
    "TIMERS_ALONE",
    "TOPICS",
    "Deps",
    "FollowUpUnitOfWork",
]
