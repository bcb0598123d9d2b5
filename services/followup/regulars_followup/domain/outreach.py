"""Whether, and when, a message may reach a customer. Pure: every rule, no I/O.

One budget per customer, shared by every workflow: consent first, then what the shop
allows, then holds (an open recovery case or a comeback holds back asks and marketing),
then the marketing interval and state caps, then quiet hours in the customer's own time.
The rules' sources are in regulars_shop.compliance, where the tables live.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import IntEnum
from typing import Literal
from zoneinfo import ZoneInfo

from regulars_shop import compliance
from regulars_shop.policy import Policy, parse_duration

from .customers import Customer
from .templates import ALWAYS_COMMERCIAL

Channel = Literal["sms", "email"]


class Priority(IntEnum):
    """Lower goes first: service and recovery, then reminders, then marketing."""

    SERVICE = 0
    REMINDER = 1
    MARKETING = 2


KIND_PRIORITY: dict[str, Priority] = {
    "survey": Priority.SERVICE,
    "recovery_check_in": Priority.SERVICE,
    "staff_notification": Priority.SERVICE,
    "opt_out_confirmation": Priority.SERVICE,
    "help": Priority.SERVICE,
    "review_request": Priority.SERVICE,
    # Asking for new business is commercial (not a transactional category in 16 CFR 316.3(c)).
    "referral_request": Priority.MARKETING,
    "reminder": Priority.REMINDER,
    "thank_you": Priority.MARKETING,
    "birthday": Priority.MARKETING,
    "win_back": Priority.MARKETING,
}

#: asks a shop may not make while a case is open or after a comeback (SPEC workflow 4)
HELD_BY_CASE_OR_COMEBACK = frozenset(
    {"review_request", "referral_request", "thank_you", "birthday", "win_back", "reminder"}
)
#: replies to what the customer texted us: sent even after an opt-out (CTIA, FCC 24-24)
REPLIES_TO_CUSTOMER = frozenset({"opt_out_confirmation", "help"})


#: the keywords an SMS provider's default handling answers itself, the whole text in any
#: case (Twilio's opt-out handling on long codes and Advanced Opt-Out: it confirms STOP and
#: blocks the number, and answers HELP and INFO); a plain-word "please stop" reaches no
#: such handling, so our own answer goes for it
PROVIDER_KEYWORDS: dict[str, frozenset[str]] = {
    "opt_out_confirmation": frozenset(
        {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
    ),
    "help": frozenset({"HELP", "INFO"}),
}
PROVIDER_ANSWERS = {
    "opt_out_confirmation": "the provider confirms opt-outs",
    "help": "the provider answers HELP",
}


def answered_by_provider(kind: str, text: str) -> str | None:
    """Why our own reply of ``kind`` to this text is not sent, when the provider has
    answered it already (a second confirmation would be refused, 21610, or repeat it)."""
    if text.strip().upper() in PROVIDER_KEYWORDS.get(kind, frozenset()):
        return PROVIDER_ANSWERS[kind]
    return None


def is_marketing(kind: str) -> bool:
    return KIND_PRIORITY.get(kind, Priority.MARKETING) is Priority.MARKETING


@dataclass(frozen=True)
class Recipient:
    state: str | None
    timezone: ZoneInfo
    phone: str | None
    email: str | None
    #: True granted, False revoked, None never said (from the consent ledger)
    consent: dict[str, bool | None]


@dataclass(frozen=True)
class ShopRules:
    channels_on: frozenset[str]
    marketing_min_interval: timedelta
    holidays: frozenset[date]
    apply_state_rules_to_all: bool = False


@dataclass(frozen=True)
class Budget:
    """What the customer has already had, and what holds asks back."""

    #: the latest marketing message sent or decided (when it goes, if it has not yet)
    last_marketing_at: datetime | None = None
    #: texts sent in the last 24 hours, or decided to go in the next 24
    sms_last_24h: int = 0
    open_recovery_case: bool = False
    comeback: bool = False
    opted_out_at: datetime | None = None  # the latest SMS opt-out, for the confirmation


@dataclass(frozen=True)
class Decision:
    action: Literal["send", "hold", "suppress"]
    reason: str
    at: datetime | None = None  # when it may go (send: now; hold: when the hold lifts)


def decide(
    kind: str, channel: Channel, now: datetime, who: Recipient, shop: ShopRules, budget: Budget
) -> Decision:
    if channel not in shop.channels_on:
        return Decision("suppress", f"the shop has turned {channel} off")
    address = who.phone if channel == "sms" else who.email
    if not address:
        return Decision("suppress", f"no {'phone number' if channel == 'sms' else 'email address'}")
    marketing = is_marketing(kind)
    consent = who.consent.get(channel)
    if kind == "opt_out_confirmation":
        opted = budget.opted_out_at
        if opted is None or now - opted > compliance.OPT_OUT_CONFIRMATION_WINDOW:
            return Decision("suppress", "opt-out confirmation is only allowed within 5 minutes")
        return Decision("send", "confirms the opt-out", now)
    if consent is False and kind not in REPLIES_TO_CUSTOMER:
        return Decision("suppress", f"customer opted out of {channel}")
    if marketing and channel == "sms" and consent is not True:
        # Marketing texts need prior express written consent (47 CFR 64.1200(a)(2)).
        return Decision("suppress", "no express consent to marketing texts")
    if kind in HELD_BY_CASE_OR_COMEBACK and budget.open_recovery_case:
        return Decision("suppress", "an open recovery case holds back asks and marketing")
    if kind in HELD_BY_CASE_OR_COMEBACK and budget.comeback:
        return Decision("suppress", "a comeback visit holds back asks and marketing")
    earliest = now
    reasons = []
    if marketing and budget.last_marketing_at is not None:
        next_ok = budget.last_marketing_at + shop.marketing_min_interval
        if next_ok > earliest:
            earliest = next_ok
            reasons.append(f"one marketing message per {shop.marketing_min_interval.days} days")
    if channel == "sms":
        purpose: compliance.Purpose = "marketing" if kind not in KIND_SERVICE_QUIET else "service"
        rule = compliance.STATE_MARKETING_RULES.get((who.state or "").upper())
        if (
            purpose == "marketing"
            and rule
            and rule.max_per_24h
            and budget.sms_last_24h >= rule.max_per_24h
        ):
            earliest = max(earliest, now + timedelta(hours=24))
            reasons.append(f"{rule.max_per_24h} texts per 24 h in {who.state}")
        opens = next_window(earliest, who, purpose, shop)
        if opens is None:
            return Decision("suppress", "no sending window in the next 14 days")
        if opens > earliest:
            local = opens.astimezone(who.timezone)
            reasons.append(
                f"quiet hours for {who.state or 'the customer'} until {local:%a %H:%M} local"
            )
            earliest = opens
    if earliest > now:
        return Decision("hold", "; ".join(reasons), earliest)
    return Decision("send", "within budget and quiet hours", now)


#: kinds that are informational for quiet hours (the federal window applies, not state
#: marketing windows): the rest, reminders included, take the stricter state rules
KIND_SERVICE_QUIET = frozenset(
    {
        "survey",
        "recovery_check_in",
        "staff_notification",
        "opt_out_confirmation",
        "help",
        "review_request",
    }
)


def next_window(
    at: datetime, who: Recipient, purpose: compliance.Purpose, shop: ShopRules
) -> datetime | None:
    """The first moment at or after ``at`` inside the recipient's local sending windows."""
    local = at.astimezone(who.timezone)
    for offset in range(15):
        day = local.date() + timedelta(days=offset)
        windows = compliance.quiet_hours_window(
            who.state,
            purpose,
            day,
            holidays=shop.holidays,
            apply_state_rules_to_all=shop.apply_state_rules_to_all,
        )
        for start, end in sorted(windows):
            begin = datetime.combine(day, start, who.timezone)
            finish = datetime.combine(day, end, who.timezone)
            if offset == 0 and local >= finish:
                continue
            candidate = max(begin, local) if offset == 0 else begin
            if candidate < finish:
                return candidate
    return None


def recipient(customer: Customer, policy: Policy) -> Recipient:
    """The customer as the budget sees them; their own timezone, else the shop's."""
    try:
        zone = ZoneInfo(customer.timezone or policy.timezone)
    except (KeyError, ValueError, OSError):  # a name no zone has (OSError: too long)
        zone = ZoneInfo(policy.timezone)
    return Recipient(
        customer.state, zone, customer.phone, customer.email, dict(customer.consent or {})
    )


def shop_rules(policy: Policy) -> ShopRules:
    on = frozenset(c for c in ("sms", "email") if policy.channel_enabled(c))
    return ShopRules(
        on,
        parse_duration(policy.marketing_min_interval),
        frozenset(policy.holidays),
        policy.quiet_hours.apply_state_rules_to_all,
    )


#: statuses of a message decided and not yet sent: scheduled or held for its moment, due,
#: or in a dispatcher's hands. Each spends the budget as a sent one does, at the moment
#: it is to go: otherwise two decisions before either is sent would both find it unspent.
DECIDED_UNSENT = frozenset({"scheduled", "held", "due", "sending"})


@dataclass(frozen=True)
class Spent:
    """One message of the customer's that counts against their budget: sent (``at``: when),
    or decided and still to go (``at``: when it is to go)."""

    marketing: bool
    channel: str | None
    at: datetime


@dataclass(frozen=True)
class BudgetFacts:
    """What the customer's messages and visits say, for their :class:`Budget`."""

    #: their messages sent since :func:`budget_since`, and every one decided before the
    #: one being decided that has not gone yet
    spent: tuple[Spent, ...]
    open_case: bool
    #: the customer's latest completed visit: (when, whether it was a comeback)
    last_visit: tuple[datetime, bool] | None


#: the span of the state caps (Fla. Stat. 501.616(6), 15 O.S. 775C.4, Md. Com. Law 14-4502)
CAP_WINDOW = timedelta(hours=24)


def budget_since(policy: Policy, now: datetime) -> datetime:
    """How far back a sent message can still bear on a decision taken ``now``."""
    return now - max(parse_duration(policy.marketing_min_interval), CAP_WINDOW)


def budget(facts: BudgetFacts, customer: Customer, policy: Policy, now: datetime) -> Budget:
    comeback = bool(
        facts.last_visit is not None
        and facts.last_visit[1]
        and now - facts.last_visit[0] <= parse_duration(policy.comeback_window)
    )
    # A text still to go within a day of now shares a 24-hour window with one sent now:
    # counting it keeps the cap whichever of the two goes first.
    texts = sum(
        1 for s in facts.spent if s.channel == "sms" and now - CAP_WINDOW <= s.at < now + CAP_WINDOW
    )
    return Budget(
        max((s.at for s in facts.spent if s.marketing), default=None),
        texts,
        facts.open_case,
        comeback,
        customer.sms_opted_out_at,
    )


def decide_for(
    kind: str,
    channel: str,
    now: datetime,
    who: Recipient,
    rules: ShopRules,
    budget: Budget,
    policy: Policy,
) -> Decision:
    """``decide``, and the shop's own obligations on top."""
    if channel == "email" and kind in ALWAYS_COMMERCIAL and not policy.contact.postal_address:
        # CAN-SPAM: commercial email must carry the shop's postal address.
        return Decision("suppress", "commercial email needs contact.postal_address in the policy")
    return decide(kind, channel, now, who, rules, budget)  # type: ignore[arg-type]


def choose(decisions: Sequence[tuple[str, Decision]]) -> tuple[str | None, Decision]:
    """The first channel that can send now; else the one whose hold lifts first; else why not."""
    sendable = [(c, d) for c, d in decisions if d.action == "send"]
    if sendable:
        return sendable[0]
    held = sorted(
        ((c, d) for c, d in decisions if d.action == "hold"),
        key=lambda cd: cd[1].at or datetime.max,
    )
    if held:
        return held[0]
    reasons = "; ".join(f"{c}: {d.reason}" for c, d in decisions)
    return None, Decision("suppress", reasons or "no channel")


def best_channel(
    kind: str,
    channels: Sequence[str],
    now: datetime,
    customer: Customer,
    policy: Policy,
    facts: BudgetFacts,
) -> tuple[str | None, Decision]:
    """Where and when a message of ``kind`` may reach ``customer``, all rules applied."""
    who, rules = recipient(customer, policy), shop_rules(policy)
    spent = budget(facts, customer, policy, now)
    return choose([(c, decide_for(kind, c, now, who, rules, spent, policy)) for c in channels])
