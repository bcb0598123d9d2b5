"""A shop's policy: every number the workflows use, validated, as ``GET|PUT /v1/policy`` shows it.

The document is JSON; ``Policy.model_dump(mode="json")`` gives back what was accepted (values
are stored as given: durations stay ISO-8601 strings, times stay "HH:MM"). A key left out
takes its default, so a policy stored before a key existed still loads; an unknown key is
an error naming it.

Durations are ISO-8601 ``PnW`` or ``PnDTnHnMnS`` (a fraction only on the last part, e.g.
"PT1.5H"). Months and years are rejected: their length varies, so use days ("P30D").
Each duration key has a ``<key>_timedelta`` property (calendar time).

SLA windows (``ack_sla``, ``ack_sla_critical``, ``resolve_sla``) count business time only:
hours, minutes and seconds are business hours, minutes and seconds; a day ("P1D") is one
*business day*, the average length of the shop's open days (9 hours for the default
Mon-Sat 09:00-18:00), and a week is ``7`` such days. ``Policy.business_duration`` converts;
``ack_sla_business`` and friends are the results, ready for
``BusinessCalendar.add(start, duration)``.

``at_risk_threshold`` (0 to 1, default 0.6) is where loyalty calls a customer at risk: when
their churn-risk score crosses it from below (``CustomerAtRisk``).

Quiet hours: the law's tables live in ``regulars_shop.compliance``; the policy holds a
copy a shop may tighten (``quiet_hours``). The effective window is always the intersection
of the two (``Policy.quiet_hours_window``), so a shop can never loosen the law and a policy
stored under older rules stays valid when the rules change.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import compliance
from .contact import DEFAULT_COUNTRY, is_country

if TYPE_CHECKING:
    from .calendar import BusinessCalendar

__all__ = [
    "DURATION_KEYS",
    "SLA_KEYS",
    "BusinessHours",
    "Channels",
    "KeyProblem",
    "Policy",
    "QuietHours",
    "StaffMember",
    "StateQuietHours",
    "business_day_length",
    "parse_duration",
    "validation_errors",
]

DAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DURATION_KEYS: tuple[str, ...] = (
    "follow_up_delay",
    "follow_up_missed_after",
    "ack_sla",
    "ack_sla_critical",
    "resolve_sla",
    "recovery_check_in_after",
    "marketing_min_interval",
    "comeback_window",
    "lapsed_after",
    "lost_after",
)
SLA_KEYS: tuple[str, ...] = ("ack_sla", "ack_sla_critical", "resolve_sla")


# --------------------------------------------------------------------------- errors


def _error(message: str, at: str = "") -> PydanticCustomError:
    """A validation error with our message; ``at`` extends the key (e.g. "2.id")."""
    return PydanticCustomError("policy", "{message}", {"message": message, "at": at})


class KeyProblem(TypedDict):
    """One problem in a policy document: the dotted key and what is wrong with it."""

    key: str
    message: str


_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def validation_errors(exc: ValidationError) -> list[KeyProblem]:
    """``[{"key": "business_hours.mon.0", "message": "end 08:00 is not after start 09:00"}]``."""
    out: list[KeyProblem] = []
    for err in exc.errors(include_url=False):
        parts = [str(p) for p in err["loc"] if p != "[key]"]
        ctx = err.get("ctx") or {}
        at = ctx.get("at")
        if isinstance(at, str) and at:
            parts.extend(at.split("."))
        message = str(err["msg"])
        for prefix in _PYDANTIC_PREFIXES:
            message = message.removeprefix(prefix)
        if err["type"] == "extra_forbidden":
            message = f"unknown key {parts[-1]!r}" if parts else "unknown key"
        elif err["type"] == "missing":
            message = "is required"
        key = ".".join(parts) or "policy"
        entry: KeyProblem = {"key": key, "message": message}
        if entry not in out:
            out.append(entry)
    return out


# --------------------------------------------------------------------------- durations

_NUMBER = r"(\d+(?:[.,]\d+)?)"
_DURATION = re.compile(
    rf"P(?:{_NUMBER}Y)?(?:{_NUMBER}M)?(?:{_NUMBER}D)?"
    rf"(?:T(?:{_NUMBER}H)?(?:{_NUMBER}M)?(?:{_NUMBER}S)?)?"
)
_WEEKS = re.compile(rf"P{_NUMBER}W")
_SECONDS = {"D": 86_400, "H": 3_600, "M": 60, "S": 1}
_EXAMPLES = "e.g. PT48H, PT30M, P2D or P1W"


def _duration_parts(value: object) -> dict[str, Decimal]:
    """``"P1DT2H"`` -> ``{"D": 1, "H": 2}``; ``{"W": n}`` for weeks."""
    if not isinstance(value, str):
        raise _error(f"{value!r} is not an ISO-8601 duration string ({_EXAMPLES})")
    weeks = _WEEKS.fullmatch(value)
    if weeks is not None:
        return {"W": _decimal(weeks[1])}
    match = _DURATION.fullmatch(value)
    if match is None or value in ("P", "PT") or value.endswith("T"):
        raise _error(f"{value!r} is not an ISO-8601 duration ({_EXAMPLES})")
    years, months, days, hours, minutes, seconds = match.groups()
    if years is not None or months is not None:
        raise _error(
            f"{value!r} uses years or months, whose length varies; use days instead (e.g. P30D)"
        )
    found = [(u, n) for u, n in zip("DHMS", (days, hours, minutes, seconds), strict=True) if n]
    if any(("." in n or "," in n) for _, n in found[:-1]):
        raise _error(f"{value!r}: only the last part of a duration may have a fraction")
    return {unit: _decimal(number) for unit, number in found}


def _decimal(number: str) -> Decimal:
    try:
        return Decimal(number.replace(",", "."))
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only numbers
        raise _error(f"{number!r} is not a number") from exc


def _to_timedelta(seconds: Decimal, value: str) -> timedelta:
    try:
        return timedelta(seconds=float(seconds))
    except OverflowError:
        raise ValueError(f"{value!r} is too long") from None


@functools.lru_cache(maxsize=1024)
def parse_duration(value: str) -> timedelta:
    """Strict ISO-8601 duration -> timedelta (calendar time): "PT48H", "P2D", "P1W", "PT1.5H".

    Raises ``ValueError`` for anything else, including years and months (ambiguous).
    Cached: a shop's few durations are asked for on every visit.
    """
    try:
        parts = _duration_parts(value)
    except PydanticCustomError as exc:
        raise ValueError(exc.message()) from None
    if "W" in parts:
        return _to_timedelta(parts["W"] * 7 * 86_400, value)
    return _to_timedelta(sum((n * _SECONDS[u] for u, n in parts.items()), Decimal(0)), value)


def _check_duration_or_zero(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise _error(str(exc)) from None
    return value


def _check_duration(value: str) -> str:
    if not parse_duration(_check_duration_or_zero(value)):
        raise _error(f"{value!r} is zero; give a positive duration")
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]
DurationOrZero = Annotated[str, AfterValidator(_check_duration_or_zero)]


# --------------------------------------------------------------------------- clock times

_HHMM = re.compile(r"(\d{1,2}):(\d{2})")
_DAY_MINUTES = 24 * 60


def _minutes(text: object, *, allow_24: bool) -> int:
    match = _HHMM.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a time HH:MM")
    hour, minute = int(match[1]), int(match[2])
    if (hour, minute) == (24, 0):
        if not allow_24:
            raise ValueError(f"{text!r} is not allowed here (times run 00:00-23:59)")
        return _DAY_MINUTES
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r} is out of range (00:00-{'24:00' if allow_24 else '23:59'})")
    return hour * 60 + minute


def _clock(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


def _interval_minutes(pair: object, *, allow_24: bool) -> tuple[int, int]:
    """``["09:00", "18:00"]`` -> (540, 1080); errors name what is wrong."""
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise ValueError(f"expected [start, end], got {pair!r}")
    raw_start, raw_end = pair
    if raw_start == "24:00":
        raise ValueError("24:00 is only allowed as an end")
    try:
        start = _minutes(raw_start, allow_24=False)
    except ValueError as exc:
        raise ValueError(f"start {exc}") from None
    try:
        end = _minutes(raw_end, allow_24=allow_24)
    except ValueError as exc:
        raise ValueError(f"end {exc}") from None
    if end <= start:
        raise ValueError(f"end {raw_end} is not after start {raw_start}")
    return start, end


def _check_business_interval(pair: list[str]) -> list[str]:
    _interval_minutes(pair, allow_24=True)
    return pair


def _check_quiet_interval(pair: list[str]) -> list[str]:
    _interval_minutes(pair, allow_24=False)
    return pair


def _check_no_overlap(intervals: list[list[str]]) -> list[list[str]]:
    spans = sorted(
        (_interval_minutes(pair, allow_24=True), index) for index, pair in enumerate(intervals)
    )
    for ((_, prev_end), prev_index), ((start, _), index) in pairwise(spans):
        if start < prev_end:
            a, b = intervals[prev_index], intervals[index]
            raise _error(f"{a[0]}-{a[1]} overlaps {b[0]}-{b[1]}", at=str(index))
    return intervals


BusinessInterval = Annotated[list[str], AfterValidator(_check_business_interval)]
BusinessDay = Annotated[list[BusinessInterval], AfterValidator(_check_no_overlap)]
QuietInterval = Annotated[list[str], AfterValidator(_check_quiet_interval)]
QuietDay = Annotated[list[QuietInterval], AfterValidator(_check_no_overlap)]


def _open_day() -> list[list[str]]:
    return [["09:00", "18:00"]]


def _federal_day() -> list[list[str]]:
    w = compliance.FEDERAL_WINDOW
    return [[f"{w.start:%H:%M}", f"{w.end:%H:%M}"]]


def _windows(intervals: list[list[str]]) -> tuple[compliance.Window, ...]:
    spans = sorted(_interval_minutes(pair, allow_24=False) for pair in intervals)
    return tuple((_clock(start), _clock(end)) for start, end in spans)


# --------------------------------------------------------------------------- sections


class BusinessHours(BaseModel):
    """Opening hours per weekday, shop time: ``[["09:00", "18:00"]]``; "24:00" ends a day."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mon: BusinessDay = Field(default_factory=_open_day)
    tue: BusinessDay = Field(default_factory=_open_day)
    wed: BusinessDay = Field(default_factory=_open_day)
    thu: BusinessDay = Field(default_factory=_open_day)
    fri: BusinessDay = Field(default_factory=_open_day)
    sat: BusinessDay = Field(default_factory=_open_day)
    sun: BusinessDay = Field(default_factory=list)

    def day(self, name: str) -> list[list[str]]:
        if name not in DAYS:
            raise KeyError(name)
        intervals: list[list[str]] = getattr(self, name)
        return intervals

    def as_mapping(self) -> dict[str, list[list[str]]]:
        return {name: [list(pair) for pair in self.day(name)] for name in DAYS}

    def open_minutes(self, name: str) -> int:
        return sum(
            end - start
            for start, end in (_interval_minutes(p, allow_24=True) for p in self.day(name))
        )

    @model_validator(mode="after")
    def _open_some_day(self) -> BusinessHours:
        if not any(self.day(name) for name in DAYS):
            raise _error("the shop must be open on at least one day of the week")
        return self


class QuietWeek(BaseModel):
    """Windows per weekday, recipient's local time; a day left out gets the federal window."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mon: QuietDay = Field(default_factory=_federal_day)
    tue: QuietDay = Field(default_factory=_federal_day)
    wed: QuietDay = Field(default_factory=_federal_day)
    thu: QuietDay = Field(default_factory=_federal_day)
    fri: QuietDay = Field(default_factory=_federal_day)
    sat: QuietDay = Field(default_factory=_federal_day)
    sun: QuietDay = Field(default_factory=_federal_day)

    def day(self, name: str) -> list[list[str]]:
        if name not in DAYS:
            raise KeyError(name)
        intervals: list[list[str]] = getattr(self, name)
        return intervals


class StateQuietHours(BaseModel):
    """One state's marketing windows and day bans (a shop may tighten the law's, not loosen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    windows: QuietWeek = Field(default_factory=QuietWeek)
    no_sundays: StrictBool = False
    no_holidays: StrictBool = False
    max_per_24h: Annotated[StrictInt, Field(ge=1)] | None = None
    consent_waives_day_bans: StrictBool = False
    citation: str = ""
    notes: str = ""

    def rule(self, state: str) -> compliance.StateRule:
        return compliance.StateRule(
            state=state,
            windows=tuple(_windows(self.windows.day(name)) for name in DAYS),
            citation=self.citation,
            no_sundays=self.no_sundays,
            no_holidays=self.no_holidays,
            max_per_24h=self.max_per_24h,
            consent_waives_day_bans=self.consent_waives_day_bans,
            notes=self.notes,
        )


_STATE_CODE = re.compile(r"[A-Z]{2}")


def _check_state_code(code: str) -> str:
    if not _STATE_CODE.fullmatch(code):
        raise ValueError(f"{code!r} is not a two-letter state code such as 'FL'")
    return code


StateCode = Annotated[str, AfterValidator(_check_state_code)]


def _default_states() -> dict[str, StateQuietHours]:
    return {
        code: StateQuietHours.model_validate(rule.as_json())
        for code, rule in compliance.STATE_MARKETING_RULES.items()
    }


class QuietHours(BaseModel):
    """When messages may reach a customer, in the customer's local time and state.

    ``federal`` bounds every SMS and call; ``states`` bound marketing (and everything when
    ``apply_state_rules_to_all``). The defaults are ``compliance.STATE_MARKETING_RULES``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    federal: QuietInterval = Field(default_factory=lambda: _federal_day()[0])
    apply_state_rules_to_all: StrictBool = False
    states: dict[StateCode, StateQuietHours] = Field(default_factory=_default_states)

    def federal_window(self) -> compliance.TimeWindow:
        start, end = _interval_minutes(self.federal, allow_24=False)
        return compliance.TimeWindow(_clock(start), _clock(end), "shop policy")

    def state_rules(self) -> dict[str, compliance.StateRule]:
        return {code: section.rule(code) for code, section in self.states.items()}


def _on_off(value: object) -> object:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return value.strip().lower()
    return value


OnOff = Annotated[Literal["on", "off"], BeforeValidator(_on_off)]


class Channels(BaseModel):
    """Which outbound channels the shop uses: "on" or "off" (true/false accepted)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sms: OnOff = "on"
    email: OnOff = "on"


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE = re.compile(r"\+?[0-9 ()./-]{7,20}")


def _check_email(value: str | None) -> str | None:
    if value is not None and not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _check_phone(value: str | None) -> str | None:
    if value is not None and (not _PHONE.fullmatch(value) or sum(c.isdigit() for c in value) < 7):
        raise ValueError(f"{value!r} is not a phone number")
    return value


def _check_web_address(value: str | None) -> str | None:
    if value is not None and not re.match(r"https?://[^\s/]+\.[^\s]+$", value):
        raise ValueError(f"{value[:60]!r} is not a web address such as https://g.page/r/...")
    return value


class StaffMember(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: Literal["advisor", "service_manager", "owner"]
    email: Annotated[str | None, AfterValidator(_check_email)] = None
    phone: Annotated[str | None, AfterValidator(_check_phone)] = None


class ShopContact(BaseModel):
    """How customers reach the shop: in HELP replies (CTIA) and commercial email (CAN-SPAM
    needs the postal address)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str | None, Field(max_length=200)] = None
    phone: Annotated[str | None, AfterValidator(_check_phone)] = None
    email: Annotated[str | None, AfterValidator(_check_email)] = None
    postal_address: Annotated[str | None, Field(max_length=500)] = None
    review_url: Annotated[
        str | None, Field(max_length=2000), AfterValidator(_check_web_address)
    ] = None


def _check_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        # OSError: a name too long for a file name (the zone database is files)
        raise ValueError(
            f"{name[:60]!r} is not an IANA time zone such as 'America/New_York'"
        ) from None
    return name


def _check_country(code: str) -> str:
    if not is_country(code):
        raise ValueError(f"{code[:20]!r} is not a country code such as US, CA or GB (upper case)")
    return code


def _check_holiday(value: object) -> object:
    if isinstance(value, datetime):
        raise ValueError(f"{value!r} is a date and time; give a date YYYY-MM-DD")
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{value!r} is not a date YYYY-MM-DD")


def _merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(current, value)
        else:
            out[key] = value
    return out


def business_day_length(hours: BusinessHours) -> timedelta:
    """One business day: the average open time of the days the shop opens (9 h by default)."""
    open_days = [hours.open_minutes(name) for name in DAYS if hours.day(name)]
    return timedelta(minutes=sum(open_days) / len(open_days))


# --------------------------------------------------------------------------- the policy


class Policy(BaseModel):
    """The shop's policy (``GET|PUT /v1/policy``). ``Policy.defaults()`` is SPEC.md's."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: built on first use: a policy is parsed once per version and asked for every visit
    _calendar: Any = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # The fields make the policy; a calendar built or not yet is no difference.
        return isinstance(other, Policy) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    timezone: Annotated[str, AfterValidator(_check_timezone)] = Field(
        default="America/New_York", description="the shop's IANA time zone"
    )
    country: Annotated[str, AfterValidator(_check_country)] = Field(
        default=DEFAULT_COUNTRY,
        description="the shop's country (ISO 3166-1 alpha-2): a customer's national phone"
        " number without a country of its own is read as one of this country",
    )
    business_hours: BusinessHours = Field(
        default_factory=BusinessHours,
        description='opening hours per weekday, shop time: {"mon": [["09:00", "18:00"]]}',
    )
    holidays: list[Annotated[date, BeforeValidator(_check_holiday)]] = Field(
        default_factory=list, description="days the shop is closed, YYYY-MM-DD"
    )
    follow_up_delay: DurationOrZero = Field(
        default="PT48H", description="follow-up call due this long after completion"
    )
    follow_up_missed_after: Duration = Field(
        default="PT24H", description="a follow-up with no attempt this long after due is missed"
    )
    follow_up_max_attempts: Annotated[StrictInt, Field(ge=1, le=20)] = 3
    ack_sla: Duration = Field(default="PT2H", description="acknowledge a case (business time)")
    ack_sla_critical: Duration = Field(default="PT30M", description="the same, critical cases")
    resolve_sla: Duration = Field(
        default="P2D", description="resolve a case (business time; P1D = one business day)"
    )
    sla_at_risk_fraction: Annotated[StrictFloat, Field(gt=0, lt=1)] = Field(
        default=0.25, description="warn when this fraction of an SLA window is left"
    )
    recovery_check_in_after: Duration = "P7D"
    marketing_min_interval: Duration = "P7D"
    comeback_window: Duration = "P30D"
    lapsed_after: Duration = "P365D"
    lost_after: Duration = "P730D"
    at_risk_threshold: Annotated[StrictFloat, Field(ge=0, le=1)] = Field(
        default=0.6,
        description="a customer is at risk when their churn-risk score (0-1) crosses this"
        " from below",
    )
    quiet_hours: QuietHours = Field(default_factory=QuietHours)
    channels: Channels = Field(default_factory=Channels)
    staff: list[StaffMember] = Field(default_factory=list)
    contact: ShopContact = Field(
        default_factory=ShopContact,
        description="the shop's name, phone, email, postal address and public review link",
    )

    @field_validator("staff")
    @classmethod
    def _unique_staff(cls, staff: list[StaffMember]) -> list[StaffMember]:
        seen: set[str] = set()
        for index, member in enumerate(staff):
            if member.id in seen:
                raise _error(f"duplicate staff id {member.id!r}", at=f"{index}.id")
            seen.add(member.id)
        return staff

    @model_validator(mode="after")
    def _lost_after_lapsed(self) -> Policy:
        if parse_duration(self.lost_after) <= parse_duration(self.lapsed_after):
            raise _error(
                f"{self.lost_after} must be longer than lapsed_after ({self.lapsed_after})",
                at="lost_after",
            )
        return self

    # ---- construction

    @classmethod
    def defaults(cls) -> Policy:
        return cls()

    def merged(self, patch: Mapping[str, Any]) -> Policy:
        """A new policy: this one with ``patch`` laid over it (objects merge, lists replace).

        Raises ``ValidationError`` like ``model_validate`` (unknown keys included).
        """
        return type(self).model_validate(_merge(self.model_dump(mode="json"), patch))

    # ---- durations (calendar time)

    def duration(self, key: str) -> timedelta:
        """The duration at ``key`` (one of ``DURATION_KEYS``) as calendar time."""
        if key not in DURATION_KEYS:
            raise KeyError(key)
        value: str = getattr(self, key)
        return parse_duration(value)

    @property
    def follow_up_delay_timedelta(self) -> timedelta:
        return parse_duration(self.follow_up_delay)

    @property
    def follow_up_missed_after_timedelta(self) -> timedelta:
        return parse_duration(self.follow_up_missed_after)

    @property
    def ack_sla_timedelta(self) -> timedelta:
        return parse_duration(self.ack_sla)

    @property
    def ack_sla_critical_timedelta(self) -> timedelta:
        return parse_duration(self.ack_sla_critical)

    @property
    def resolve_sla_timedelta(self) -> timedelta:
        return parse_duration(self.resolve_sla)

    @property
    def recovery_check_in_after_timedelta(self) -> timedelta:
        return parse_duration(self.recovery_check_in_after)

    @property
    def marketing_min_interval_timedelta(self) -> timedelta:
        return parse_duration(self.marketing_min_interval)

    @property
    def comeback_window_timedelta(self) -> timedelta:
        return parse_duration(self.comeback_window)

    @property
    def lapsed_after_timedelta(self) -> timedelta:
        return parse_duration(self.lapsed_after)

    @property
    def lost_after_timedelta(self) -> timedelta:
        return parse_duration(self.lost_after)

    # ---- business time (SLAs)

    @property
    def business_day(self) -> timedelta:
        """One business day of this shop (average open day; 9 h for Mon-Sat 09:00-18:00)."""
        return business_day_length(self.business_hours)

    def business_duration(self, value: str) -> timedelta:
        """An SLA duration as business time: days (and weeks of 7 days) become business days.

        "PT2H" -> 2 business hours; "P2D" -> 2 x ``business_day``; "P1DT4H" -> a business
        day and 4 business hours. Feed the result to ``BusinessCalendar.add``.
        """
        try:
            parts = _duration_parts(value)
        except PydanticCustomError as exc:
            raise ValueError(exc.message()) from None
        days = parts.get("W", Decimal(0)) * 7 + parts.get("D", Decimal(0))
        rest = sum((parts.get(unit, Decimal(0)) * _SECONDS[unit] for unit in "HMS"), Decimal(0))
        day_seconds = Decimal(self.business_day.total_seconds())
        return _to_timedelta(days * day_seconds + rest, value)

    @property
    def ack_sla_business(self) -> timedelta:
        return self.business_duration(self.ack_sla)

    @property
    def ack_sla_critical_business(self) -> timedelta:
        return self.business_duration(self.ack_sla_critical)

    @property
    def resolve_sla_business(self) -> timedelta:
        return self.business_duration(self.resolve_sla)

    # ---- other views

    def channel_enabled(self, channel: str) -> bool:
        """Whether the shop sends on ``channel`` ("sms" or "email"); calls are always on."""
        if channel == "call":
            return True
        if channel not in ("sms", "email"):
            raise KeyError(channel)
        state: str = getattr(self.channels, channel)
        return state == "on"

    def staff_member(self, staff_id: str) -> StaffMember | None:
        return next((m for m in self.staff if m.id == staff_id), None)

    def staff_with_role(self, role: str) -> list[StaffMember]:
        return [m for m in self.staff if m.role == role]

    def calendar(self) -> BusinessCalendar:
        """The shop's business calendar (opening hours, holidays, time zone)."""
        from .calendar import BusinessCalendar

        if self._calendar is None:
            self._calendar = BusinessCalendar.from_policy(
                self.timezone, self.business_hours.as_mapping(), self.holidays
            )
        calendar: BusinessCalendar = self._calendar
        return calendar

    def quiet_hours_window(
        self,
        state: str | None,
        purpose: compliance.Purpose,
        day: date,
        *,
        holidays: frozenset[date] | None = None,
        prior_express_consent: bool = False,
    ) -> list[compliance.Window]:
        """Local-time windows for an SMS or call on ``day``: the law's, narrowed by this policy.

        ``holidays`` are the legal holidays of the recipient's state; they default to this
        policy's ``holidays``.
        """
        days_off = frozenset(self.holidays) if holidays is None else holidays
        apply_all = self.quiet_hours.apply_state_rules_to_all
        law = compliance.quiet_hours_window(
            state,
            purpose,
            day,
            holidays=days_off,
            prior_express_consent=prior_express_consent,
            apply_state_rules_to_all=apply_all,
        )
        shop = compliance.quiet_hours_window(
            state,
            purpose,
            day,
            holidays=days_off,
            prior_express_consent=prior_express_consent,
            apply_state_rules_to_all=apply_all,
            rules=self.quiet_hours.state_rules(),
            federal=self.quiet_hours.federal_window(),
        )
        return compliance.intersect_windows(law, shop)
