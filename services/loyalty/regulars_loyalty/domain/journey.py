"""A journey entry in a shop's words: who acted, one line on what happened, and the ids
to follow. Read from the event as the catalogue defines it; a type this service does not
know yet still gets an entry (its name, the system as actor), so nothing is hidden."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Actor = Literal["advisor", "staff", "customer", "system", "shop_system"]

#: the ids worth following, in the order an entry lists them
REFERENCES = (
    "repair_order_id",
    "task_id",
    "case_id",
    "survey_id",
    "message_id",
    "invoice_id",
    "plan_id",
    "asset_id",
)


@dataclass(frozen=True)
class Who:
    actor: Actor
    name: str | None = None


@dataclass(frozen=True)
class Entry:
    who: Who
    summary: str
    ids: dict[str, str]


def _money(cents: Any) -> str:
    return f"${int(cents) / 100:,.2f}" if isinstance(cents, int) else ""


def _text(value: Any, limit: int = 80) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _score(data: Mapping[str, Any]) -> str:
    parts = []
    if data.get("nps") is not None:
        parts.append(f"NPS {data['nps']}")
    if data.get("csat") is not None:
        parts.append(f"CSAT {data['csat']}")
    return ", ".join(parts)


def _completed(d: Mapping[str, Any]) -> str:
    what = _text(d["work_performed"], 60) if d.get("work_performed") else "service"
    total = f" for {_money(d['total_cents'])}" if d.get("total_cents") is not None else ""
    comeback = " (a comeback)" if d.get("comeback") else ""
    return f"{what} completed{total}{comeback}"


def _attempted(d: Mapping[str, Any]) -> str:
    outcome = str(d.get("outcome", "")).replace("_", " ")
    return f"follow-up call attempt {d.get('attempt', '?')}: {outcome}"


def _followed_up(d: Mapping[str, Any]) -> str:
    mood = "satisfied" if d.get("satisfied") else "not satisfied"
    score = f", score {d['score']}" if d.get("score") is not None else ""
    return f"follow-up call reached the customer: {mood}{score}"


def _feedback(d: Mapping[str, Any]) -> str:
    score = _score(d)
    comment = f': "{_text(d["comment"], 60)}"' if d.get("comment") else ""
    return f"answered the survey{' (' + score + ')' if score else ''}{comment}"


def _case_opened(d: Mapping[str, Any]) -> str:
    who = d.get("assignee_name") or d.get("assignee")
    return f"recovery case opened ({d.get('severity', 'normal')}), assigned to {who}"


SUMMARIES: dict[str, tuple[Actor, Callable[[Mapping[str, Any]], str]]] = {
    "regulars.customer.upserted.v1": (
        "shop_system",
        lambda d: f"customer record: {_text(d.get('name', ''))}",
    ),
    "regulars.service.completed.v1": ("advisor", _completed),
    "regulars.service.voided.v1": ("shop_system", lambda d: "repair order voided"),
    "regulars.service.reopened.v1": ("shop_system", lambda d: "repair order reopened"),
    "regulars.appointment.booked.v1": (
        "shop_system",
        lambda d: f"appointment booked for {d.get('starts_at', '')[:16]}",
    ),
    "regulars.invoice.issued.v1": (
        "shop_system",
        lambda d: (
            f"invoice issued: {_money(d.get('amount_cents'))}, due {str(d.get('due_at', ''))[:10]}"
        ),
    ),
    "regulars.invoice.paid.v1": (
        "customer",
        lambda d: f"invoice paid: {_money(d.get('amount_cents'))}",
    ),
    "regulars.invoice.overdue.v1": (
        "shop_system",
        lambda d: (
            f"invoice overdue: {_money(d.get('amount_cents'))}, due {str(d.get('due_at', ''))[:10]}"
        ),
    ),
    "regulars.service_plan.renewed.v1": ("customer", lambda d: "service plan renewed"),
    "regulars.service_plan.expired.v1": ("system", lambda d: "service plan expired"),
    "regulars.referral.reported.v1": (
        "customer",
        lambda d: f"referred customer {_text(d.get('referred_customer_id', ''))}",
    ),
    "regulars.customer.replied.v1": (
        "customer",
        lambda d: f'replied by {d.get("channel", "message")}: "{_text(d.get("text", ""))}"',
    ),
    "regulars.consent.changed.v1": (
        "customer",
        lambda d: f"{d.get('channel')} consent {'given' if d.get('granted') else 'withdrawn'}",
    ),
    "regulars.followup.scheduled.v1": (
        "system",
        lambda d: f"follow-up call scheduled for {str(d.get('due_at', ''))[:16]}",
    ),
    "regulars.followup.cancelled.v1": (
        "system",
        lambda d: f"follow-up call cancelled: {_text(d.get('reason', ''))}",
    ),
    "regulars.followup.attempted.v1": ("staff", _attempted),
    "regulars.followup.completed.v1": ("staff", _followed_up),
    "regulars.followup.missed.v1": (
        "system",
        lambda d: f"follow-up call missed ({str(d.get('reason', '')).replace('_', ' ')})",
    ),
    "regulars.message.sent.v1": (
        "system",
        lambda d: f"{d.get('kind', 'message')} sent by {d.get('channel')}".replace("_", " "),
    ),
    "regulars.message.failed.v1": (
        "system",
        lambda d: f"{d.get('kind', 'message')} by {d.get('channel')} failed".replace("_", " "),
    ),
    "regulars.reminder.sent.v1": (
        "system",
        lambda d: f"{str(d.get('kind', 'reminder')).replace('_', ' ')} reminder sent",
    ),
    "regulars.survey.requested.v1": (
        "system",
        lambda d: "survey sent" + (f" by {d['channel']}" if d.get("channel") else ""),
    ),
    "regulars.feedback.received.v1": ("customer", _feedback),
    "regulars.feedback.negative.v1": (
        "system",
        lambda d: f"negative feedback{' (' + _score(d) + ')' if _score(d) else ''}",
    ),
    "regulars.feedback.positive.v1": (
        "system",
        lambda d: f"positive feedback{' (' + _score(d) + ')' if _score(d) else ''}",
    ),
    "regulars.recovery_case.opened.v1": ("system", _case_opened),
    "regulars.recovery_case.acknowledged.v1": ("staff", lambda d: "recovery case acknowledged"),
    "regulars.recovery_case.sla_at_risk.v1": (
        "system",
        lambda d: f"recovery case {d.get('clock', '')} deadline near",
    ),
    "regulars.recovery_case.escalated.v1": (
        "system",
        lambda d: f"recovery case escalated to {str(d.get('to_level', '')).replace('_', ' ')}",
    ),
    "regulars.recovery_case.resolved.v1": (
        "staff",
        lambda d: f"recovery case resolved: {_text(d.get('outcome', ''), 60)}",
    ),
    "regulars.review.requested.v1": ("system", lambda d: "invited to leave a review"),
    "regulars.referral.requested.v1": ("system", lambda d: "asked for a referral"),
    "regulars.staff.praised.v1": (
        "customer",
        lambda d: f"praised {d.get('staff_name') or d.get('staff_id') or 'the staff'}",
    ),
    "regulars.lifecycle.stage_changed.v1": (
        "system",
        lambda d: (
            f"stage {d.get('from_stage') or 'new'} → {d.get('to_stage')}:"
            f" {_text(d.get('reason', ''), 60)}"
        ),
    ),
    "regulars.lifecycle.customer_at_risk.v1": (
        "system",
        lambda d: "at risk: " + ", ".join(str(r).replace("_", " ") for r in d.get("reasons", [])),
    ),
}

#: which data field names the person who acted, per actor
_NAMED_BY: dict[Actor, tuple[str, ...]] = {
    "advisor": ("advisor",),
    "staff": ("by", "acknowledged_by", "resolved_by", "assignee"),
}


def describe(event_type: str, data: Mapping[str, Any]) -> Entry:
    actor, summary = SUMMARIES.get(event_type, ("system", lambda d: event_type))
    name = next((str(data[f]) for f in _NAMED_BY.get(actor, ()) if data.get(f) is not None), None)
    if actor == "advisor" and name is None:
        actor = "shop_system"
    try:
        line = summary(data)
    except (KeyError, TypeError, ValueError):
        line = event_type
    ids = {k: str(data[k]) for k in REFERENCES if data.get(k) is not None}
    return Entry(Who(actor, name), line, ids)
