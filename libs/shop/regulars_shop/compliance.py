"""The US messaging rules Regulars applies, as versioned data with the source beside each row.

This module is the single home of ``../shared/COMPLIANCE.md`` in code: quiet hours (the
federal window and the stricter state windows, day bans and per-24-hour caps), the reply
keywords (opt-out, opt-in, help) and the retention periods. Everything here is pure: no
clock, no I/O. Not legal advice: these are the defaults; a shop's policy may only tighten
them (see ``regulars_shop.policy``).

Conventions:

* times are the *recipient's* local wall-clock times;
* a window ``(start, end)`` is half-open: sending at ``start`` is allowed, at ``end`` not;
* a window list is sorted and non-overlapping; an empty list means "not on that day".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Final, Literal

__all__ = [
    "ALL_CHANNELS",
    "FEDERAL_WINDOW",
    "HELP_KEYWORDS",
    "OPT_IN_KEYWORDS",
    "OPT_OUT_CONFIRMATION_WINDOW",
    "OPT_OUT_CONFIRMATION_WINDOW_CITATION",
    "OPT_OUT_KEYWORDS",
    "OPT_OUT_LEDGER_RETENTION",
    "RULES_VERSION",
    "SMS_OPT_OUT_RETENTION_CITATION",
    "SMS_OPT_OUT_RETENTION_YEARS",
    "STATE_MARKETING_RULES",
    "WEEKDAYS",
    "Keyword",
    "KeywordSet",
    "Purpose",
    "ReplyClass",
    "StateRule",
    "TimeWindow",
    "Window",
    "allowed_at",
    "classify_reply",
    "intersect_windows",
    "opt_out_channels",
    "quiet_hours_window",
    "state_rule",
]

#: Bump when any table below changes (year-month of the review against the sources).
RULES_VERSION: Final = "2026-11"

WEEKDAYS: Final[tuple[str, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_SUNDAY: Final = 6

Purpose = Literal["service", "marketing"]
ReplyClass = Literal["opt_out", "opt_in", "help", "other"]
#: a local-time window, half-open ``[start, end)``
Window = tuple[time, time]

#: every channel a consent can cover (``ConsentChanged.channel``)
ALL_CHANNELS: Final[frozenset[str]] = frozenset({"sms", "email", "call"})


# --------------------------------------------------------------------------- quiet hours


@dataclass(frozen=True)
class TimeWindow:
    """One local-time window ``[start, end)`` and where it comes from."""

    start: time
    end: time
    citation: str = ""

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"window {self.start:%H:%M}-{self.end:%H:%M} must end after it starts")

    @property
    def pair(self) -> Window:
        return (self.start, self.end)


#: Our default for every SMS and every call, whatever the purpose (COMPLIANCE.md: informational
#: texts are not solicitations, but suits over late texts are common).
FEDERAL_WINDOW: Final = TimeWindow(time(8), time(21), "47 CFR 64.1200(c)(1)")


@dataclass(frozen=True)
class StateRule:
    """A state's rules for telephone solicitation (marketing calls and texts).

    ``windows`` holds one tuple of windows per weekday, Monday first. ``no_sundays`` and
    ``no_holidays`` are day bans; ``consent_waives_day_bans`` says they do not apply when
    the customer gave prior express consent (Utah). ``max_per_24h`` caps the messages sent
    in any 24 hours (it also bounds our marketing message budget).
    """

    state: str
    windows: tuple[tuple[Window, ...], ...]
    citation: str
    no_sundays: bool = False
    no_holidays: bool = False
    max_per_24h: int | None = None
    consent_waives_day_bans: bool = False
    notes: str = ""

    def __post_init__(self) -> None:
        if len(self.windows) != 7:
            raise ValueError(f"{self.state}: windows needs 7 weekdays, got {len(self.windows)}")
        for day, windows in zip(WEEKDAYS, self.windows, strict=True):
            previous: time | None = None
            for start, end in windows:
                if end <= start or (previous is not None and start < previous):
                    raise ValueError(f"{self.state}.{day}: windows must be sorted and disjoint")
                previous = end
        if self.max_per_24h is not None and self.max_per_24h < 1:
            raise ValueError(f"{self.state}: max_per_24h must be at least 1")

    def windows_on(self, weekday: int) -> tuple[Window, ...]:
        """The windows of a weekday (0 = Monday), before any day ban."""
        return self.windows[weekday]

    def as_json(self) -> dict[str, object]:
        """A JSON-friendly form (the shape ``Policy.quiet_hours.states`` uses)."""
        return {
            "windows": {
                day: [[f"{start:%H:%M}", f"{end:%H:%M}"] for start, end in windows]
                for day, windows in zip(WEEKDAYS, self.windows, strict=True)
            },
            "no_sundays": self.no_sundays,
            "no_holidays": self.no_holidays,
            "max_per_24h": self.max_per_24h,
            "consent_waives_day_bans": self.consent_waives_day_bans,
            "citation": self.citation,
            "notes": self.notes,
        }


def _hm(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def _week(
    weekdays: str | None,
    *,
    sat: str | None = None,
    sun: str | None = None,
) -> tuple[tuple[Window, ...], ...]:
    """Seven days of windows from "HH:MM-HH:MM" strings; ``sat``/``sun`` default to weekdays."""

    def parse(spec: str | None) -> tuple[Window, ...]:
        if not spec:
            return ()
        start, end = spec.split("-")
        return ((_hm(start), _hm(end)),)

    return (
        *(parse(weekdays),) * 5,
        parse(sat if sat is not None else weekdays),
        parse(sun if sun is not None else weekdays),
    )


def state_rule(
    state: str,
    weekdays: str,
    citation: str,
    *,
    sat: str | None = None,
    sun: str | None = None,
    no_sundays: bool = False,
    no_holidays: bool = False,
    max_per_24h: int | None = None,
    consent_waives_day_bans: bool = False,
    notes: str = "",
) -> StateRule:
    """A row of the table: ``state_rule("TX", "09:00-21:00", ..., sun="12:00-21:00")``.

    ``weekdays`` is the Mon-Fri window "HH:MM-HH:MM"; ``sat`` and ``sun`` default to it
    ("" = no window that day).
    """
    return StateRule(
        state=state,
        windows=_week(weekdays, sat=sat, sun=sun),
        citation=citation,
        no_sundays=no_sundays,
        no_holidays=no_holidays,
        max_per_24h=max_per_24h,
        consent_waives_day_bans=consent_waives_day_bans,
        notes=notes,
    )


#: COMPLIANCE.md "Quiet hours", one row per state (marketing; a shop may apply them to all).
STATE_MARKETING_RULES: Final[Mapping[str, StateRule]] = {
    rule.state: rule
    for rule in (
        state_rule(
            "FL",
            "08:00-20:00",
            "Fla. Stat. 501.616(6)",
            max_per_24h=3,
            notes="at most 3 calls per 24 h on one subject",
        ),
        state_rule(
            "OK", "08:00-20:00", "15 O.S. 775C.4", max_per_24h=3, notes="at most 3 per 24 h"
        ),
        state_rule(
            "MD",
            "08:00-20:00",
            "Md. Com. Law 14-4502",
            max_per_24h=3,
            notes="at most 3 calls/texts per 24 h",
        ),
        state_rule("MS", "08:00-20:00", "Miss. Code 77-3-723", no_sundays=True),
        state_rule("CT", "09:00-20:00", "Conn. Gen. Stat. 42-288a"),
        state_rule(
            "TX",
            "09:00-21:00",
            "Tex. Bus. & Com. Code 301.051",
            sun="12:00-21:00",
            notes="Sunday 12:00-21:00",
        ),
        state_rule("WA", "08:00-20:00", "RCW 19.158.040(2)"),
        state_rule(
            "LA",
            "08:00-20:00",
            "La. R.S. 45:844.12; LPSC R-29617",
            no_sundays=True,
            no_holidays=True,
            notes="no Sundays or legal holidays",
        ),
        state_rule(
            "AL",
            "08:00-20:00",
            "Ala. Admin. Code r. 770-X-5-.17",
            no_sundays=True,
            no_holidays=True,
            notes="no Sundays or holidays",
        ),
        state_rule(
            "UT",
            "08:00-21:00",
            "Utah Code 13-25a-103",
            no_sundays=True,
            no_holidays=True,
            consent_waives_day_bans=True,
            notes="no Sundays or legal holidays; day bans don't apply with prior express consent",
        ),
        state_rule(
            "RI",
            "09:00-18:00",
            "R.I. Gen. Laws 5-61-3.6",
            sat="10:00-17:00",
            sun="",
            no_sundays=True,
            no_holidays=True,
            notes="Mon-Fri 09:00-18:00, Sat 10:00-17:00; no Sundays or holidays",
        ),
        state_rule("KY", "10:00-21:00", "KRS 367.46955"),
        state_rule("NJ", "08:00-21:00", "N.J.S.A. 56:8-128", notes="as federal"),
        state_rule(
            "VA",
            "08:00-21:00",
            "Va. Code 59.1-511",
            notes="as federal; SMS opt-outs kept 10 years (SMS_OPT_OUT_RETENTION_YEARS)",
        ),
    )
}


def intersect_windows(a: Iterable[Window], b: Iterable[Window]) -> list[Window]:
    """The windows in both ``a`` and ``b`` (each sorted or not, each non-overlapping)."""
    left, right = sorted(a), sorted(b)
    out: list[Window] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if start < end:
            out.append((start, end))
        if left[i][1] <= right[j][1]:
            i += 1
        else:
            j += 1
    return out


def _normalise_state(state: str | None) -> str | None:
    if state is None:
        return None
    code = state.strip().upper()
    return code.removeprefix("US-") or None


def quiet_hours_window(
    state: str | None,
    purpose: Purpose,
    day: date,
    *,
    holidays: Iterable[date] = frozenset(),
    prior_express_consent: bool = False,
    apply_state_rules_to_all: bool = False,
    rules: Mapping[str, StateRule] = STATE_MARKETING_RULES,
    federal: TimeWindow = FEDERAL_WINDOW,
) -> list[Window]:
    """The local-time windows in which an SMS or call may go out on ``day``.

    * Every purpose: the federal window (``FEDERAL_WINDOW``).
    * Marketing (or any purpose when ``apply_state_rules_to_all``): the recipient's state row
      too, if ``rules`` has one: its windows for that weekday and its day bans (Sundays,
      ``holidays``; waived by prior express consent where the row says so).
    * An unknown or missing state: the federal window only.

    An empty list means no sending that day. ``rules``/``federal`` default to the law's
    tables; a shop's tightened copy can be passed instead (intersect with the default).
    """
    if purpose not in ("service", "marketing"):
        raise ValueError(f"purpose must be 'service' or 'marketing', got {purpose!r}")
    windows: list[Window] = [federal.pair]
    code = _normalise_state(state)
    rule = rules.get(code) if code is not None else None
    if rule is None or (purpose == "service" and not apply_state_rules_to_all):
        return windows
    waived = prior_express_consent and rule.consent_waives_day_bans
    banned = (rule.no_sundays and day.weekday() == _SUNDAY) or (
        rule.no_holidays and day in frozenset(holidays)
    )
    if banned and not waived:
        return []
    return intersect_windows(windows, rule.windows_on(day.weekday()))


def allowed_at(
    state: str | None,
    purpose: Purpose,
    local: datetime,
    *,
    holidays: Iterable[date] = frozenset(),
    prior_express_consent: bool = False,
    apply_state_rules_to_all: bool = False,
) -> bool:
    """Whether an SMS or call may go out at the recipient's local wall-clock time ``local``."""
    windows = quiet_hours_window(
        state,
        purpose,
        local.date(),
        holidays=holidays,
        prior_express_consent=prior_express_consent,
        apply_state_rules_to_all=apply_state_rules_to_all,
    )
    moment = local.time().replace(tzinfo=None)
    return any(start <= moment < end for start, end in windows)


# --------------------------------------------------------------------------- keywords


@dataclass(frozen=True)
class Keyword:
    """A reply keyword; a reply that is exactly this word (case and punctuation aside)."""

    word: str
    citation: str
    #: YES restores only as the answer to our opt-out confirmation text
    only_after_confirmation: bool = False


@dataclass(frozen=True)
class KeywordSet:
    """The keywords of one reply class. ``"stop" in OPT_OUT_KEYWORDS`` matches like a reply."""

    kind: Literal["opt_out", "opt_in", "help"]
    rows: tuple[Keyword, ...]
    _words: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        words = frozenset(k.word for k in self.rows if not k.only_after_confirmation)
        object.__setattr__(self, "_words", words)

    @property
    def words(self) -> frozenset[str]:
        """The words that always count (not those needing a confirmation first)."""
        return self._words

    @property
    def after_confirmation(self) -> frozenset[str]:
        return frozenset(k.word for k in self.rows if k.only_after_confirmation)

    def citation(self, word: str) -> str:
        key = _keyword_form(word)
        for row in self.rows:
            if row.word == key:
                return row.citation
        raise KeyError(word)

    def __contains__(self, text: object) -> bool:
        return isinstance(text, str) and _keyword_form(text) in self._words

    def __iter__(self) -> Iterator[str]:
        return (k.word for k in self.rows if not k.only_after_confirmation)

    def __len__(self) -> int:
        return len(self._words)


_FCC_24_24 = "FCC 24-24 (89 FR 15756), 47 CFR 64.1200"
_PROVIDER = "carrier and SMS-provider defaults (CTIA; Twilio opt-out keywords)"

OPT_OUT_KEYWORDS: Final = KeywordSet(
    "opt_out",
    (
        Keyword("STOP", _FCC_24_24),
        Keyword("QUIT", _FCC_24_24),
        Keyword("END", _FCC_24_24),
        Keyword("REVOKE", _FCC_24_24),
        Keyword("OPT OUT", _FCC_24_24),
        Keyword("CANCEL", _FCC_24_24),
        Keyword("UNSUBSCRIBE", _FCC_24_24),
        Keyword("STOPALL", _PROVIDER),
        Keyword("OPTOUT", _PROVIDER),
    ),
)

OPT_IN_KEYWORDS: Final = KeywordSet(
    "opt_in",
    (
        Keyword("START", "Twilio default opt-in keywords; CTIA Messaging Principles"),
        Keyword("UNSTOP", "Twilio default opt-in keywords; CTIA Messaging Principles"),
        Keyword(
            "YES",
            "Twilio default opt-in keywords; only as the answer to our opt-out "
            "confirmation (FCC 24-24)",
            only_after_confirmation=True,
        ),
    ),
)

HELP_KEYWORDS: Final = KeywordSet(
    "help",
    (
        Keyword("HELP", "CTIA Messaging Principles and Best Practices; Twilio help keywords"),
        Keyword("INFO", "CTIA Messaging Principles and Best Practices; Twilio help keywords"),
    ),
)

#: One confirmation text (no marketing) may follow an opt-out, within this time.
OPT_OUT_CONFIRMATION_WINDOW: Final = timedelta(minutes=5)
OPT_OUT_CONFIRMATION_WINDOW_CITATION: Final = _FCC_24_24

#: Virginia keeps an SMS opt-out for 10 years (from 1 Jan 2026). Our consent ledger is kept
#: forever (it is the audit), which satisfies this; the constant is for reports and checks.
SMS_OPT_OUT_RETENTION_YEARS: Final = 10
SMS_OPT_OUT_RETENTION_CITATION: Final = (
    "Va. Code 59.1-510 et seq. (Virginia Telephone Privacy Protection Act), from 1 Jan 2026"
)
#: How long the consent ledger is kept: ``None`` = forever.
OPT_OUT_LEDGER_RETENTION: Final[timedelta | None] = None


# --------------------------------------------------------------------------- replies

_QUOTES = str.maketrans(
    {
        "\u2019": "'",
        "\u2018": "'",
        "\u02bc": "'",
        "`": "'",
        "\u00b4": "'",
        "\u201c": '"',
        "\u201d": '"',
    }
)


def _normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return " ".join(text.split())


def _is_edge_noise(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch)[0] in "PSZC"


def _keyword_form(text: str) -> str:
    """``"  Opt-out!! "`` -> ``"OPT OUT"``: surrounding punctuation and spacing ignored."""
    text = unicodedata.normalize("NFKC", text)
    start, end = 0, len(text)
    while start < end and _is_edge_noise(text[start]):
        start += 1
    while end > start and _is_edge_noise(text[end - 1]):
        end -= 1
    core = re.sub(r"[\s_\-]+", " ", text[start:end])
    return core.upper()


# Words around a bare keyword that leave it a bare keyword ("stop please", "STOP it now!").
_FILLERS: Final = frozenset(
    {
        "please",
        "pls",
        "plz",
        "plse",
        "now",
        "it",
        "thanks",
        "thank",
        "you",
        "thx",
        "ty",
        "just",
        "already",
        "asap",
        "immediately",
        "right",
        "away",
        "ok",
        "okay",
        "kindly",
        "me",
        "all",
        "them",
        "this",
        "that",
        "sir",
        "maam",
        "ma'am",
    }
)
# Keywords that keep their meaning with filler words or as a sentence of a longer reply.
# CANCEL and END do not ("cancel it" is about an appointment); they count only when exact.
_STRONG_OPT_OUT: Final = frozenset(
    {
        "stop",
        "stopall",
        "unsubscribe",
        "unsub",
        "optout",
        "opt out",
        "revoke",
        "quit",
    }
)
_HELP_WORDS: Final = frozenset({"help", "info"})

_SMS = r"(?:texts?|texting|texted|txts?|txting|sms(?:es|'s|s)?)"
_EMAIL = r"(?:e-?mails?|e-?mailing|e-?mailed|e-?mail\s+address|mailings?|mails?|newsletters?)"
_CALL = r"(?:(?:phone\s+)?calls?|calling|called|phoning|phoned|robo-?calls?|voicemails?)"
_GENERIC = (
    r"(?:messages?|messaging|messaged|msgs?|notifications?|reminders?|alerts?|"
    r"promotions?|promos?|marketing|offers?|ads|adverts?|advertising|spam(?:ming)?|"
    r"solicitations?|coupons?|surveys?|stuff|junk|crap|sending)"
)
_ALL = (
    r"(?:contact(?:ing|ed)?|bother(?:ing)?|harass(?:ing)?|hassl(?:e|ing)|"
    r"pester(?:ing)?|communications?)"
)
_NUMBER = r"(?:(?:phone\s+|cell\s+)?number|phone|cell)"
_CHANNEL_WORD = rf"(?:{_SMS}|{_EMAIL}|{_CALL}|{_GENERIC}|{_ALL})"
_DETERMINERS = (
    r"(?:(?:all|the|these|those|this|your|ur|any|such|of|more|further|future|a|an)"
    r"\s+)*"
)
_NEG = r"(?:don't|dont|do\s+not|never)"

_CHANNEL_LEXICON: Final[tuple[tuple[re.Pattern[str], frozenset[str]], ...]] = (
    (re.compile(rf"\b(?:{_SMS}|txt)\b"), frozenset({"sms"})),
    (re.compile(rf"\b(?:{_EMAIL}|e-?mail|mail)\b"), frozenset({"email"})),
    (re.compile(rf"\b(?:{_CALL}|call|phone|ring)\b"), frozenset({"call"})),
    (re.compile(rf"\b{_ALL}\b"), ALL_CHANNELS),
    (re.compile(rf"\b{_NUMBER}\b"), frozenset({"sms", "call"})),
)

# Plain-language revocations. The named group ``ch`` is the part that says which channels;
# a match whose ``ch`` names none covers the channel the reply came on.
_REVOCATIONS: Final[tuple[re.Pattern[str], ...]] = tuple(
    re.compile(p)
    for p in (
        # "stop texting me", "please stop sending me emails", "quit calling", "stop the texts"
        rf"\b(?:stop|quit|cease|halt|discontinue)\s+(?:with\s+)?"
        rf"(?:(?:sending|giving)\s+(?:me\s+|us\s+)?)?{_DETERMINERS}(?P<ch>{_CHANNEL_WORD})\b",
        # "don't text me", "do not contact me", "never call or text me again"
        rf"\b{_NEG}\s+(?:ever\s+)?"
        r"(?P<ch>(?:text|txt|sms|message|msg|e-?mail|mail|call|phone|ring|contact|bother|spam)"
        r"(?:\s*(?:,|/|or|and|nor)\s*(?:text|txt|sms|message|msg|e-?mail|mail|call|phone|ring|"
        r"contact|bother|spam))*)"
        rf"\s+(?:me|us|this\s+number|{_NUMBER}|my\s+{_NUMBER}|my\s+e-?mail)\b"
        r"(?!\s+(?:back|before|after|until|till|til|during|between|tomorrow|today|tonight|later|"
        r"at\s+\d|on\s+(?:the\s+)?(?:weekends?|(?:mon|tues|wednes|thurs|fri|satur|sun)days?)|"
        r"in\s+the\s+(?:morning|afternoon|evening)))",
        # "don't send me any more texts", "never send us anything"
        rf"\b{_NEG}\s+(?:ever\s+)?send\s+(?:me|us)\s+(?:any\s*more\s+|anymore\s+)?{_DETERMINERS}"
        rf"(?P<ch>{_CHANNEL_WORD}|anything|nothing|things)\b",
        # "I don't want any more emails", "I no longer wish to receive texts"
        rf"\b(?:{_NEG}|no\s+longer)\s+(?:want|wish)\s+(?:to\s+(?:receive|get|be)\s+)?"
        rf"(?:any\s*more\s+|anymore\s+)?{_DETERMINERS}(?P<ch>{_CHANNEL_WORD})\b",
        # "unsubscribe me", "opt me out of texts", "unsubscribe me from the mailing list"
        rf"\b(?:unsubscribe|unsub|opt\s*-?\s*out|optout|opt\s+me\s+out)\b(?:\s+(?:me|us))?"
        rf"(?:\s+(?:from|of|on)\s+{_DETERMINERS}(?P<ch>(?:{_CHANNEL_WORD}|mailing|email|e-mail|"
        r"text|texting|sms|call|calling)(?:\s+lists?)?))?",
        # "remove me from your list", "take my number off your texting list"
        rf"\b(?:remove|take|delete|drop|erase|scratch)\s+(?P<ch>me|us|my\s+(?:{_NUMBER}|"
        r"e-?mail(?:\s+address)?|name|info|information|details|contact(?:\s+info)?))\s+"
        rf"(?:from|off(?:\s+of)?|out\s+of)\s+{_DETERMINERS}"
        r"(?P<list>(?:(?:mailing|e-?mail|text|texting|sms|call|calling|contact|marketing|customer|"
        r"message|messaging|promo|promotional)\s+)?(?:lists?|database|system|texts?|e-?mails?|"
        r"messages?|calls?|records?))\b",
        # "no more texts", "no more of these messages"
        rf"\bno\s+more\s+(?:of\s+)?{_DETERMINERS}(?P<ch>{_CHANNEL_WORD})\b",
        # "leave me alone", "lose my number"
        rf"\b(?:leave\s+me\s+alone|(?P<ch>(?:lose|delete|forget)\s+my\s+{_NUMBER}))\b",
    )
)

_NEGATED_BEFORE: Final = re.compile(
    r"\b(?:don't|dont|do\s+not|didn't|didnt|did\s+not|never|not)"
    r"(?:\s+(?:want|wanna|need|mean|meant|try|trying|wish|going)(?:\s+to)?)?\s*$"
)
_SENTENCES: Final = re.compile(r"[.!?;\n]+")
_TOKEN_EDGE: Final = re.compile(r"^[\W_]+|[\W_]+$")


def _tokens(text: str) -> list[str]:
    words = (_TOKEN_EDGE.sub("", w) for w in re.split(r"[\s\-_/,]+", text))
    return [w for w in words if w]


def _bare_keyword(text: str, allowed: frozenset[str]) -> bool:
    """Whether ``text`` is one of ``allowed`` once filler words are set aside."""
    kept: list[str] = []
    for word in _tokens(text):
        if word in _FILLERS:
            continue
        if not kept or kept[-1] != word:  # "stop stop stop"
            kept.append(word)
    return " ".join(kept) in allowed


def _exact_class(text: str, *, after_confirmation: bool) -> ReplyClass | None:
    word = _keyword_form(text)
    if word in OPT_OUT_KEYWORDS.words:
        return "opt_out"
    if word in OPT_IN_KEYWORDS.words or (
        after_confirmation and word in OPT_IN_KEYWORDS.after_confirmation
    ):
        return "opt_in"
    if word in HELP_KEYWORDS.words:
        return "help"
    return None


def _phrase_revocations(normal: str) -> list[frozenset[str] | None]:
    """The channels each plain-language revocation in ``normal`` names (None: unnamed)."""
    found: list[frozenset[str] | None] = []
    for pattern in _REVOCATIONS:
        for match in pattern.finditer(normal):
            if _NEGATED_BEFORE.search(normal, 0, match.start()):
                continue
            named = " ".join(g for g in match.groups() if g)
            found.append(_channels_named(named) if named else None)
    return found


def _channels_named(words: str) -> frozenset[str] | None:
    channels: set[str] = set()
    for pattern, covered in _CHANNEL_LEXICON:
        if pattern.search(words):
            channels |= covered
    return frozenset(channels) or None


def _keyword_revocation(normal: str) -> bool:
    """A bare strong opt-out keyword as the whole reply or one sentence of it ("STOP. Sold it")."""
    return any(_bare_keyword(part, _STRONG_OPT_OUT) for part in _SENTENCES.split(normal))


def classify_reply(text: str, *, after_confirmation: bool = False) -> ReplyClass:
    """What a customer's reply asks for.

    * Exactly a keyword (case, surrounding spaces and punctuation aside): its class. YES
      is an opt-in only when ``after_confirmation`` (it answers our confirmation text).
    * A strong opt-out keyword with only filler words ("stop please", "STOP. Sold the car"),
      or plain words a reasonable person reads as "stop" ("please stop texting me", "don't
      email me", "remove me from your list"): ``"opt_out"``. A mere mention ("stop by
      tomorrow", "the brakes stop fine now") is not.
    * HELP or INFO with only filler words: ``"help"``. Anything else: ``"other"``.
    """
    exact = _exact_class(text, after_confirmation=after_confirmation)
    if exact is not None:
        return exact
    normal = _normalise_text(text)
    if _keyword_revocation(normal) or _phrase_revocations(normal):
        return "opt_out"
    if _bare_keyword(normal, _HELP_WORDS):
        return "help"
    return "other"


def opt_out_channels(text: str, channel: str) -> set[str]:
    """The channels a reply received on ``channel`` revokes (empty if it is no opt-out).

    A keyword (STOP, "unsubscribe me"...) revokes the channel it came on; plain words that
    name channels revoke those ("don't email me" by SMS revokes email only; "do not contact
    me" revokes sms, email and call). Channels: ``"sms"``, ``"email"``, ``"call"``.
    """
    if channel not in ALL_CHANNELS:
        raise ValueError(f"channel must be one of {sorted(ALL_CHANNELS)}, got {channel!r}")
    if _exact_class(text, after_confirmation=False) is not None:
        return {channel} if _keyword_form(text) in OPT_OUT_KEYWORDS.words else set()
    normal = _normalise_text(text)
    covered: set[str] = set()
    if _keyword_revocation(normal):
        covered.add(channel)
    for named in _phrase_revocations(normal):
        covered |= named if named is not None else {channel}
    return covered
