"""The event catalogue: one pydantic model per event, the public contract of Regulars.

Times are timezone-aware datetimes; ids are the shop's own strings. Fields a shop may
send beyond these are kept (``extra="allow"``).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from .base import Event

Id = str


class Consent(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    sms: bool | None = None
    email: bool | None = None


# --- intake: what a shop's system reports -------------------------------------------


class CustomerUpserted(Event):
    type = "regulars.customer.upserted.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=500)
    #: E.164 once intake has accepted it (``+15125550142``); a shop may post it as typed
    phone: str | None = Field(default=None, max_length=50)
    email: str | None = Field(default=None, max_length=320)
    state: str | None = Field(default=None, max_length=2)
    timezone: str | None = None
    #: ISO 3166-1 alpha-2; a national phone number is read as one of this country (else
    #: the shop's)
    country: str | None = Field(default=None, min_length=2, max_length=2)
    birthday: date | None = None
    consent: Consent | None = None


class ServiceCompleted(Event):
    type = "regulars.service.completed.v1"
    repair_order_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    completed_at: AwareDatetime
    advisor: str | None = None
    asset_id: Id | None = None
    mileage: int | None = Field(default=None, ge=0)
    concern: str | None = None
    work_performed: str | None = None
    total_cents: int | None = None
    promised_at: AwareDatetime | None = None
    comeback: bool | None = None


class ServiceVoided(Event):
    type = "regulars.service.voided.v1"
    repair_order_id: Id = Field(min_length=1, max_length=200)
    #: filled in by intake from the visit it voids, so the event keys to its customer
    customer_id: Id | None = None


class ServiceReopened(Event):
    type = "regulars.service.reopened.v1"
    repair_order_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id | None = None


class AppointmentBooked(Event):
    type = "regulars.appointment.booked.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    starts_at: AwareDatetime


class InvoiceIssued(Event):
    type = "regulars.invoice.issued.v1"
    invoice_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    amount_cents: int
    due_at: AwareDatetime


class InvoicePaid(Event):
    type = "regulars.invoice.paid.v1"
    invoice_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    amount_cents: int
    due_at: AwareDatetime


class InvoiceOverdue(Event):
    type = "regulars.invoice.overdue.v1"
    invoice_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    amount_cents: int
    due_at: AwareDatetime


class ServicePlanRenewed(Event):
    type = "regulars.service_plan.renewed.v1"
    plan_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)


class ServicePlanExpired(Event):
    type = "regulars.service_plan.expired.v1"
    plan_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)


class ReferralReported(Event):
    type = "regulars.referral.reported.v1"
    subject_field = "referrer_customer_id"
    referrer_customer_id: Id = Field(min_length=1, max_length=200)
    referred_customer_id: Id = Field(min_length=1, max_length=200)


class CustomerReplied(Event):
    type = "regulars.customer.replied.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    channel: Literal["sms", "email"]
    text: str = Field(max_length=10_000)


class ConsentChanged(Event):
    type = "regulars.consent.changed.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    channel: Literal["sms", "email", "call"]
    granted: bool


class ShopPolicyChanged(Event):
    """A shop's policy, whole, at a new version (emitted by intake on create and on PUT)."""

    type = "regulars.shop.policy_changed.v1"
    subject_field = None
    version: int = Field(ge=1)
    policy: dict[str, Any]
    #: the staff member who changed it at the console; absent for the shop's system (API key)
    changed_by: str | None = Field(default=None, max_length=200)


class ShopApiKeyIssued(Event):
    """A new API key for a shop: only its SHA-256 travels, so every service can check it."""

    type = "regulars.shop.api_key_issued.v1"
    subject_field = None
    key_id: str = Field(min_length=1, max_length=64)
    secret_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ShopApiKeyRevoked(Event):
    type = "regulars.shop.api_key_revoked.v1"
    subject_field = None
    key_id: str = Field(min_length=1, max_length=64)


#: what a shop posts to ``POST /v1/events`` (short name -> event class)
SHOP_EVENTS: dict[str, type[Event]] = {
    "customer.upserted": CustomerUpserted,
    "service.completed": ServiceCompleted,
    "service.voided": ServiceVoided,
    "service.reopened": ServiceReopened,
    "appointment.booked": AppointmentBooked,
    "invoice.issued": InvoiceIssued,
    "invoice.paid": InvoicePaid,
    "invoice.overdue": InvoiceOverdue,
    "service_plan.renewed": ServicePlanRenewed,
    "service_plan.expired": ServicePlanExpired,
    "referral.reported": ReferralReported,
    "customer.replied": CustomerReplied,
    "consent.changed": ConsentChanged,
}


# --- followup ----------------------------------------------------------------------


class FollowUpScheduled(Event):
    type = "regulars.followup.scheduled.v1"
    task_id: Id
    customer_id: Id
    repair_order_id: Id
    assignee: str | None = None
    due_at: AwareDatetime


class FollowUpCancelled(Event):
    type = "regulars.followup.cancelled.v1"
    task_id: Id
    customer_id: Id
    repair_order_id: Id
    reason: str


#: a staff call attempt's result
AttemptOutcome = Literal["reached", "no_answer", "voicemail", "wrong_number"]
#: an outbound message channel
MessageChannel = Literal["sms", "email"]


class FollowUpAttempted(Event):
    """Staff recorded one call attempt on a follow-up task."""

    type = "regulars.followup.attempted.v1"
    task_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id = Field(min_length=1, max_length=200)
    #: 1 for the first attempt on the task
    attempt: int = Field(ge=1)
    outcome: AttemptOutcome
    #: the staff id of whoever made the call, when known
    by: str | None = Field(default=None, max_length=200)
    at: AwareDatetime


class FollowUpCompleted(Event):
    """The customer was reached; the feedback service alone classifies the result."""

    type = "regulars.followup.completed.v1"
    task_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id = Field(min_length=1, max_length=200)
    assignee: str | None = Field(default=None, max_length=200)
    satisfied: bool
    score: int | None = Field(default=None, ge=0, le=10)
    notes: str | None = Field(default=None, max_length=10_000)
    completed_at: AwareDatetime


class FollowUpMissed(Event):
    """Too many unanswered attempts, or no attempt recorded in time after the due time."""

    type = "regulars.followup.missed.v1"
    task_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id = Field(min_length=1, max_length=200)
    reason: Literal["max_attempts", "no_attempt_in_time"]
    missed_at: AwareDatetime


class MessageSent(Event):
    """An outbound message was handed to the SMS or email provider."""

    type = "regulars.message.sent.v1"
    message_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    channel: MessageChannel
    #: what the message is (survey, review_request, recovery_notice, maintenance_due, ...)
    kind: str = Field(min_length=1, max_length=100)
    #: the idempotency key: one message per customer and purpose, never the same one twice
    purpose: str = Field(min_length=1, max_length=500)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    sent_at: AwareDatetime | None = None


class MessageFailed(Event):
    """An outbound message could not be delivered (after its retries)."""

    type = "regulars.message.failed.v1"
    message_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    channel: MessageChannel
    kind: str = Field(min_length=1, max_length=100)
    purpose: str = Field(min_length=1, max_length=500)
    error: str = Field(min_length=1, max_length=10_000)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    failed_at: AwareDatetime | None = None


class ReminderSent(Event):
    """A keep-in-touch message from the monthly database check went out."""

    type = "regulars.reminder.sent.v1"
    message_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    kind: Literal["maintenance_due", "birthday", "thank_you", "win_back"]
    channel: MessageChannel | None = None
    sent_at: AwareDatetime | None = None


# --- feedback ----------------------------------------------------------------------

#: where a piece of feedback came from
FeedbackSource = Literal["survey", "follow_up_call", "reply"]
CaseSeverity = Literal["critical", "high", "normal"]
#: the escalation ladder, lowest first
EscalationLevel = Literal["advisor", "service_manager", "owner"]
#: a recovery case's two SLA clocks
SlaClock = Literal["acknowledge", "resolve"]


class SurveyRequested(Event):
    type = "regulars.survey.requested.v1"
    survey_id: Id | None = Field(default=None, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    reason: Literal["after_follow_up", "follow_up_missed", "recovery_resurvey"]
    #: the channel to prefer; followup still applies consent and policy
    channel: MessageChannel | None = None
    #: where the survey's link leads, without its token (``https://links.../s/``):
    #: followup adds the token it makes from the survey's id (regulars_shop.survey_links),
    #: so the link, a customer's credential, never travels on the bus
    survey_page: str | None = Field(default=None, max_length=2_000)
    #: the whole link, token included, as events before ``survey_page`` carried it; no
    #: longer sent, still read from an older event
    survey_url: str | None = Field(default=None, max_length=2_000)


class FeedbackReceived(Event):
    type = "regulars.feedback.received.v1"
    survey_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    nps: int | None = Field(default=None, ge=0, le=10)
    csat: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=10_000)
    received_at: AwareDatetime | None = None


class NegativeFeedback(Event):
    """A bad experience (NPS 0-6, CSAT 1-2, a complaint, an unhappy call)."""

    type = "regulars.feedback.negative.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    source: FeedbackSource
    survey_id: Id | None = Field(default=None, max_length=200)
    nps: int | None = Field(default=None, ge=0, le=10)
    csat: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=10_000)
    #: one recovery case per incident: the same key joins the same case
    incident_key: str = Field(min_length=1, max_length=500)
    #: why it was classified negative, and what feedback made of it
    reasons: list[str] | None = None
    #: the safety matter found in the text, if any (it makes the case critical)
    safety: str | None = Field(default=None, max_length=200)
    severity: CaseSeverity | None = None
    case_id: Id | None = Field(default=None, max_length=200)


class PositiveFeedback(Event):
    """A promoter (NPS 9-10) or a happy customer."""

    type = "regulars.feedback.positive.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    source: FeedbackSource
    survey_id: Id | None = Field(default=None, max_length=200)
    nps: int | None = Field(default=None, ge=0, le=10)
    csat: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=10_000)
    incident_key: str = Field(min_length=1, max_length=500)


class RecoveryCaseOpened(Event):
    type = "regulars.recovery_case.opened.v1"
    case_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    severity: CaseSeverity
    assignee: str = Field(min_length=1, max_length=200)
    escalation_level: EscalationLevel
    ack_due_at: AwareDatetime
    resolve_due_at: AwareDatetime
    incident_key: str | None = Field(default=None, max_length=500)
    source: str | None = Field(default=None, max_length=100)
    reasons: list[str] | None = None
    opened_at: AwareDatetime | None = None
    #: the assignee's name and contact from the shop's policy, so a notifier needs no lookup
    assignee_name: str | None = Field(default=None, max_length=200)
    assignee_email: str | None = Field(default=None, max_length=320)
    assignee_phone: str | None = Field(default=None, max_length=50)
    staff_id: str | None = Field(default=None, max_length=200)


class RecoveryCaseAcknowledged(Event):
    type = "regulars.recovery_case.acknowledged.v1"
    case_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    acknowledged_by: str | None = Field(default=None, max_length=200)
    acknowledged_at: AwareDatetime | None = None
    repair_order_id: Id | None = Field(default=None, max_length=200)
    escalation_level: EscalationLevel | None = None
    severity: CaseSeverity | None = None


class RecoveryCaseSlaAtRisk(Event):
    """A quarter (by default) of an SLA window is left."""

    type = "regulars.recovery_case.sla_at_risk.v1"
    case_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    clock: SlaClock
    due_at: AwareDatetime
    assignee: str | None = Field(default=None, max_length=200)
    escalation_level: EscalationLevel | None = None
    severity: CaseSeverity | None = None
    repair_order_id: Id | None = Field(default=None, max_length=200)
    #: the assignee's name and contact from the shop's policy, so a notifier needs no lookup
    assignee_name: str | None = Field(default=None, max_length=200)
    assignee_email: str | None = Field(default=None, max_length=320)
    assignee_phone: str | None = Field(default=None, max_length=50)
    staff_id: str | None = Field(default=None, max_length=200)


class RecoveryCaseEscalated(Event):
    """An SLA was breached: the case moved one level up the ladder."""

    type = "regulars.recovery_case.escalated.v1"
    case_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    from_level: EscalationLevel
    to_level: EscalationLevel
    assignee: str = Field(min_length=1, max_length=200)
    #: the clock that was breached
    clock: SlaClock
    escalated_at: AwareDatetime | None = None
    severity: CaseSeverity | None = None
    repair_order_id: Id | None = Field(default=None, max_length=200)
    previous_assignee: str | None = Field(default=None, max_length=200)
    #: the deadline that was missed, and the new level's
    breached_due_at: AwareDatetime | None = None
    due_at: AwareDatetime | None = None
    #: the assignee's name and contact from the shop's policy, so a notifier needs no lookup
    assignee_name: str | None = Field(default=None, max_length=200)
    assignee_email: str | None = Field(default=None, max_length=320)
    assignee_phone: str | None = Field(default=None, max_length=50)
    staff_id: str | None = Field(default=None, max_length=200)


class RecoveryCaseResolved(Event):
    type = "regulars.recovery_case.resolved.v1"
    case_id: Id = Field(min_length=1, max_length=200)
    customer_id: Id = Field(min_length=1, max_length=200)
    #: the outcome note resolution requires
    outcome: str = Field(min_length=1, max_length=10_000)
    resolved_at: AwareDatetime
    resolved_by: str | None = Field(default=None, max_length=200)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    severity: CaseSeverity | None = None
    opened_at: AwareDatetime | None = None
    acknowledged_at: AwareDatetime | None = None
    escalation_level: EscalationLevel | None = None
    #: when the check-in call and the re-survey are due
    check_in_at: AwareDatetime | None = None


class ReviewRequested(Event):
    """Invite an online review (every surveyed customer without an open case, no gating)."""

    type = "regulars.review.requested.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    survey_id: Id | None = Field(default=None, max_length=200)


class ReferralRequested(Event):
    type = "regulars.referral.requested.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    survey_id: Id | None = Field(default=None, max_length=200)


class StaffPraised(Event):
    """Praise that names a staff member, for that person and their manager."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["staff_id"], "properties": {"staff_id": {"type": "string"}}},
                {"required": ["staff_name"], "properties": {"staff_name": {"type": "string"}}},
            ]
        }
    )

    type = "regulars.staff.praised.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    staff_id: str | None = Field(default=None, max_length=200)
    staff_name: str | None = Field(default=None, max_length=500)
    text: str = Field(min_length=1, max_length=10_000)
    #: the staff id of that person's manager, when the shop has one
    manager: str | None = Field(default=None, max_length=200)
    repair_order_id: Id | None = Field(default=None, max_length=200)
    survey_id: Id | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _names_someone(self) -> StaffPraised:
        if self.staff_id is None and self.staff_name is None:
            raise ValueError("staff_id or staff_name is required")
        return self

    source: str | None = Field(default=None, max_length=100)
    staff_email: str | None = Field(default=None, max_length=320)
    manager_name: str | None = Field(default=None, max_length=200)
    manager_email: str | None = Field(default=None, max_length=320)


# --- loyalty -----------------------------------------------------------------------

LifecycleStage = Literal[
    "prospect", "customer", "repeat", "loyal", "advocate", "at_risk", "lapsed", "lost"
]


class LifecycleStageChanged(Event):
    type = "regulars.lifecycle.stage_changed.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    from_stage: LifecycleStage | None = None
    to_stage: LifecycleStage
    reason: str = Field(min_length=1, max_length=1_000)


class CustomerAtRisk(Event):
    type = "regulars.lifecycle.customer_at_risk.v1"
    customer_id: Id = Field(min_length=1, max_length=200)
    #: e.g. open_negative_feedback, missed_follow_up, overdue_maintenance
    reasons: list[str] = Field(min_length=1)
    #: the churn-risk score that crossed the threshold (1 = certain to churn)
    score: float | None = Field(default=None, ge=0, le=1)
    #: the estimated probability that the customer is still "alive" (will come back)
    p_alive: float | None = Field(default=None, ge=0, le=1)
    #: the shop's at_risk_threshold the score crossed from below
    threshold: float | None = Field(default=None, ge=0, le=1)
