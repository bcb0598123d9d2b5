"""What each message says, by kind and channel. Pure: text in, text out, no I/O.

Which kinds are commercial (CAN-SPAM "primary purpose", 16 CFR 316.3):

- always commercial: ``birthday`` (a greeting that exists to keep the shop in mind, often
  with an offer), ``win_back`` (asks a lapsed customer to buy again) and
  ``referral_request`` (asks the customer to bring the shop new business; none of the
  transactional or relationship categories of 316.3(c) covers it, so we take the safe
  side: postal address, unsubscribe, and a marketing opt-out stops it);
- ``thank_you`` is a relationship note, and becomes commercial when it carries an
  ``offer`` (the offer then is the primary purpose);
- transactional or relationship: ``survey`` and ``recovery_check_in`` (about a visit),
  ``review_request`` (about a visit, never with an incentive), ``reminder`` (maintenance
  due on the customer's own vehicle or equipment: closest to warranty/safety information),
  ``staff_notification`` (to staff), ``opt_out_confirmation`` and ``help`` (replies to
  what the customer texted).

Every customer email carries an unsubscribe link (CAN-SPAM requires it only on commercial
email; on the others it is a courtesy the product promises); commercial email must also
carry the shop's postal address and says it is an advertisement (15 USC 7704(a)(5)).

Every SMS starts with the shop's name (CTIA: identify the sender) and, except the one
opt-out confirmation, ends with how to stop. SMS text stays in plain ASCII where we write
it, so a message without exotic names stays in the GSM-7 alphabet (160 characters a
segment instead of 70).
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal
from urllib.parse import urlsplit

Channel = Literal["sms", "email"]


class Kind(StrEnum):
    SURVEY = "survey"
    REVIEW_REQUEST = "review_request"
    REFERRAL_REQUEST = "referral_request"
    REMINDER = "reminder"
    BIRTHDAY = "birthday"
    THANK_YOU = "thank_you"
    WIN_BACK = "win_back"
    RECOVERY_CHECK_IN = "recovery_check_in"
    STAFF_NOTIFICATION = "staff_notification"
    OPT_OUT_CONFIRMATION = "opt_out_confirmation"
    HELP = "help"


#: commercial whatever the context; ``thank_you`` joins them when it carries an offer
ALWAYS_COMMERCIAL = frozenset({Kind.BIRTHDAY, Kind.WIN_BACK, Kind.REFERRAL_REQUEST})
#: kinds that may carry ``context["offer"]``; the others ignore it, review asks refuse it
OFFER_KINDS = frozenset({Kind.BIRTHDAY, Kind.WIN_BACK, Kind.THANK_YOU, Kind.REFERRAL_REQUEST})
#: keyword replies to a text: there is no email version of them
SMS_ONLY = frozenset({Kind.OPT_OUT_CONFIRMATION, Kind.HELP})
#: context keys that would attach an incentive to a review ask (16 CFR 465.4; Google
#: forbids any incentive for a review, whatever the sentiment)
INCENTIVE_KEYS = frozenset({"offer", "incentive", "discount", "reward", "coupon", "gift"})

SMS_MAX = 320
STOP_FOOTER = "Reply STOP to opt out"
HELP_FOOTER = "Reply STOP to cancel"  # CTIA's wording for the HELP reply
ELLIPSIS = "..."  # ASCII: the one-character ellipsis is not GSM-7 and would force UCS-2

# Caps on what one context value may take in a message, so a pasted novel in a name
# field cannot crowd out the link or the opt-out line.
_NAME_MAX = 40
_SHOP_MAX = 60
_FIELD_MAX = 80
_SUMMARY_MAX = 200
_SUBJECT_MAX = 120
_URL_MAX = 500


@dataclass(frozen=True)
class RenderedMessage:
    subject: str | None  # email only
    text: str
    html: str | None  # email only
    commercial: bool


@dataclass(frozen=True)
class _Link:
    label: str
    url: str


_Block = str | _Link


@dataclass(frozen=True)
class _Draft:
    """One message in both shapes; ``render`` keeps the one the channel needs."""

    subject: str
    blocks: tuple[_Block, ...]  # email body after the greeting
    sms: str  # SMS body between the shop-name prefix and the link
    sms_link: str | None = None
    commercial: bool = False
    greeting: bool = True


def render(
    kind: Kind | str, channel: Channel | str, context: Mapping[str, object]
) -> RenderedMessage:
    """One message of ``kind`` for ``channel``.

    ``context``: ``customer_name``, ``shop_name``, ``shop_phone``, ``shop_address``,
    ``link``, ``unsubscribe_url``, and per kind: ``vehicle``, ``service_due``, ``due``
    (reminder), ``offer`` (birthday, win_back, thank_you, referral_request), ``summary``
    and ``staff_name`` (staff_notification), ``message_frequency`` and ``program``
    (help), ``customer_first_name`` (overrides the first word of ``customer_name``).
    A missing required key raises ValueError naming it.
    """
    try:
        k = Kind(kind)
    except ValueError:
        raise ValueError(
            f"unknown message kind {kind!r}; known: {', '.join(k.value for k in Kind)}"
        ) from None
    if channel not in ("sms", "email"):
        raise ValueError(f"channel must be 'sms' or 'email', not {channel!r}")
    if channel == "email" and k in SMS_ONLY:
        raise ValueError(f"{k.value} is a reply to a text message; it has no email form")
    ctx = _Context(k, context)
    draft = _TEMPLATES[k](ctx)
    if channel == "sms":
        return _render_sms(ctx, k, draft)
    return _render_email(ctx, k, draft)


# ---------------------------------------------------------------------------- context


class _Context:
    def __init__(self, kind: Kind, raw: Mapping[str, object]) -> None:
        self.kind = kind
        self._raw = raw
        self.shop = self.req("shop_name", _SHOP_MAX)

    def opt(self, key: str, limit: int = _FIELD_MAX) -> str | None:
        value = self._raw.get(key)
        if value is None:
            return None
        text = clip(_one_line(str(value)), limit)
        return text or None

    def req(self, key: str, limit: int = _FIELD_MAX) -> str:
        value = self.opt(key, limit)
        if value is None:
            raise ValueError(f"a {self.kind.value} message needs context[{key!r}]")
        return value

    def req_url(self, key: str) -> str:
        url = self.url(key)
        if url is None:
            raise ValueError(f"a {self.kind.value} message needs context[{key!r}]")
        return url

    def url(self, key: str) -> str | None:
        value = self._raw.get(key)
        if value is None or not str(value).strip():
            return None
        url = str(value).strip()
        parts = urlsplit(url)
        # Anything but a plain web address (javascript:, data:, a URL with spaces or
        # control characters) would be unsafe in an href or unusable in a text.
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or len(url) > _URL_MAX
            or any(c.isspace() or unicodedata.category(c) == "Cc" for c in url)
        ):
            raise ValueError(f"context[{key!r}] must be an http(s) URL, got {url[:80]!r}")
        return url

    def has_any(self, keys: frozenset[str]) -> list[str]:
        return sorted(k for k in keys if self._raw.get(k) not in (None, ""))

    @property
    def first_name(self) -> str | None:
        explicit = self.opt("customer_first_name", _NAME_MAX)
        if explicit:
            return _first_word(explicit)
        return first_name_of(self.opt("customer_name", _NAME_MAX * 2))

    @property
    def greeting_name(self) -> str:
        return self.first_name or "there"

    def address_lines(self, required: bool) -> list[str]:
        value = self._raw.get("shop_address")
        lines = [] if value is None else [_one_line(line) for line in str(value).splitlines()]
        lines = [clip(line, _FIELD_MAX) for line in lines if line]
        if required and not lines:
            raise ValueError(
                f"a commercial {self.kind.value} email needs context['shop_address'] "
                "(the shop's postal address, CAN-SPAM)"
            )
        return lines


def first_name_of(full_name: str | None) -> str | None:
    """What to greet a customer by, from the name the shop's system holds."""
    if not full_name:
        return None
    full = clip(_one_line(full_name), _NAME_MAX * 2)
    # Shop systems often export "LAST, FIRST"
    return _first_word(full.split(",", 1)[1] if "," in full else full)


def _first_word(name: str) -> str | None:
    words = name.split()
    if not words:
        return None
    first = clip(words[0], _NAME_MAX)
    # "DANA" from an all-caps export reads as shouting in a greeting
    return first.capitalize() if first.isupper() and len(first) > 1 else first


_BIDI_CONTROLS = frozenset("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _one_line(value: str) -> str:
    """NFC, no control or bidi-override characters, whitespace collapsed to single spaces.

    A newline in a name could forge a line of the message (or a header); a bidi override
    could make a link read as something else.
    """
    value = unicodedata.normalize("NFC", value)
    kept = []
    for c in value:
        if c.isspace():
            kept.append(" ")
        elif unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS:
            continue
        else:
            kept.append(c)
    return " ".join("".join(kept).split())


# ---------------------------------------------------------------------------- length


def _attaches(c: str) -> bool:
    """True when ``c`` belongs to the character before it (cutting before it splits one)."""
    o = ord(c)
    return (
        unicodedata.combining(c) != 0
        or unicodedata.category(c) in ("Mn", "Mc", "Me")
        or c == "\u200d"  # zero-width joiner
        or 0xFE00 <= o <= 0xFE0F  # variation selectors
        or 0x1F3FB <= o <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= o <= 0xE007F  # tag characters (subdivision flags)
    )


def _is_regional_indicator(c: str) -> bool:
    return 0x1F1E6 <= ord(c) <= 0x1F1FF


def _safe_cut(text: str, cut: int) -> int:
    """Move ``cut`` left until it falls between two user-perceived characters."""
    while 0 < cut < len(text) and (_attaches(text[cut]) or text[cut - 1] == "\u200d"):
        cut -= 1
    # Flags are pairs of regional indicators: never keep half a pair.
    run = 0
    while run < cut and _is_regional_indicator(text[cut - 1 - run]):
        run += 1
    if run % 2 and cut < len(text) and _is_regional_indicator(text[cut]):
        cut -= 1
    return cut


def clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, ending in "..." when shortened.

    Cuts at a word boundary when one is near, never inside a combined character, emoji
    sequence or flag. Counts code points, which is what the SMS length rules count.
    """
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:limit]
    cut = limit - len(ELLIPSIS)
    space = text.rfind(" ", 0, cut + 1)
    if space >= cut * 0.6:
        cut = space
    cut = _safe_cut(text, cut)
    return text[:cut].rstrip(" ,;:-") + ELLIPSIS


# ---------------------------------------------------------------------------- kinds


def _on(vehicle: str | None) -> str:
    return f" on your {vehicle}" if vehicle else ""


def _call(ctx: _Context) -> str:
    phone = ctx.opt("shop_phone", 30)
    return f" or call us at {phone}" if phone else ""


def _survey(ctx: _Context) -> _Draft:
    link = ctx.req_url("link")
    vehicle = ctx.opt("vehicle")
    work = f" for your {vehicle}" if vehicle else ""
    return _Draft(
        subject=f"How was your visit to {ctx.shop}?",
        blocks=(
            f"Thank you for choosing {ctx.shop}{work}. We would like to know how it went: "
            "the survey takes about a minute.",
            _Link("Take the survey", link),
            f"If anything is not right, reply to this email{_call(ctx)} and we will make it right.",
        ),
        sms=f"Hi {ctx.greeting_name}, thanks for your recent visit{work}. How did we do? "
        "Tell us in a minute:",
        sms_link=link,
    )


def _review_request(ctx: _Context) -> _Draft:
    incentives = ctx.has_any(INCENTIVE_KEYS)
    if incentives:
        raise ValueError(
            f"a review request never carries an incentive (16 CFR 465, Google policy); "
            f"remove context {incentives}"
        )
    link = ctx.req_url("link")
    # The same words for every customer: nothing here may depend on a score or a
    # sentiment (no review gating), and nothing hints at what the review should say.
    return _Draft(
        subject=f"Share your experience with {ctx.shop}",
        blocks=(
            f"Thank you for choosing {ctx.shop}. Would you take a moment to share your "
            "experience in a public review? Every honest review helps other customers "
            "decide.",
            _Link("Write a review", link),
        ),
        sms=f"Hi {ctx.greeting_name}, thank you for choosing us. Would you share your "
        "experience in a public review?",
        sms_link=link,
    )


def _referral_request(ctx: _Context) -> _Draft:
    link = ctx.url("link")
    offer = ctx.opt("offer", 100)
    extra = f" {offer}." if offer else ""
    blocks: list[_Block] = [
        f"Thank you for being a customer of {ctx.shop}. If someone you know could use our "
        "help, we would be grateful if you passed our name along." + extra,
    ]
    if link:
        blocks.append(_Link("Refer a friend", link))
    return _Draft(
        subject=f"Know someone who could use {ctx.shop}?",
        blocks=tuple(blocks),
        sms=f"Hi {ctx.greeting_name}, thanks for being a customer. If someone you know could "
        "use our help, we'd be grateful if you passed our name along." + extra,
        sms_link=link,
        commercial=True,
    )


def _reminder(ctx: _Context) -> _Draft:
    service = ctx.req("service_due")
    vehicle = ctx.opt("vehicle")
    due = ctx.opt("due", 40)
    when = f" {due}" if due else ""
    link = ctx.url("link")
    phone = ctx.opt("shop_phone", 30)
    who = f"your {vehicle} is" if vehicle else "you are"
    what = f"{who} due for {service}{when}"
    book_sms = "Book here:" if link else f"Call {phone} to book." if phone else "Reply to book."
    blocks: list[_Block] = [f"Our records show {what}."]
    if link:
        blocks.append(_Link("Book a visit", link))
    blocks.append(f"Reply to this email{_call(ctx)} to book a time that suits you.")
    subject = f"Reminder: {what}"
    return _Draft(
        subject=subject,
        blocks=tuple(blocks),
        sms=f"Hi {ctx.greeting_name}, {what}. {book_sms}",
        sms_link=link,
    )


def _birthday(ctx: _Context) -> _Draft:
    offer = ctx.opt("offer", 100)
    link = ctx.url("link")
    gift = f" As a birthday gift: {offer}." if offer else ""
    blocks: list[_Block] = [f"Happy birthday from all of us at {ctx.shop}!{gift}"]
    if link:
        blocks.append(_Link("See the details", link))
    return _Draft(
        subject=f"Happy birthday from {ctx.shop}",
        blocks=tuple(blocks),
        sms=f"Happy birthday, {ctx.greeting_name}! Wishing you a great year.{gift}",
        sms_link=link,
        commercial=True,
    )


def _thank_you(ctx: _Context) -> _Draft:
    offer = ctx.opt("offer", 100)
    link = ctx.url("link")
    extra = f" As a thank-you: {offer}." if offer else ""
    blocks: list[_Block] = [
        f"Thank you for being a loyal customer of {ctx.shop}. We truly appreciate your trust "
        "and look forward to seeing you again." + extra,
    ]
    if link:
        blocks.append(_Link("See the details", link))
    return _Draft(
        subject=f"Thank you from {ctx.shop}",
        blocks=tuple(blocks),
        sms=f"Hi {ctx.greeting_name}, thank you for being a loyal customer. We truly "
        "appreciate your trust." + extra,
        sms_link=link,
        commercial=offer is not None,
    )


def _win_back(ctx: _Context) -> _Draft:
    offer = ctx.opt("offer", 100)
    vehicle = ctx.opt("vehicle")
    link = ctx.url("link")
    phone = ctx.opt("shop_phone", 30)
    extra = f" {offer}." if offer else ""
    needs = f"your {vehicle}" if vehicle else "you"
    book_sms = "Book here:" if link else f"Call {phone} to book." if phone else ""
    blocks: list[_Block] = [
        f"It has been a while since we last saw you at {ctx.shop}. Whenever {needs} "
        "need" + ("s" if vehicle else "") + " us, we are here." + extra,
    ]
    if link:
        blocks.append(_Link("Book a visit", link))
    return _Draft(
        subject=f"We miss you at {ctx.shop}",
        blocks=tuple(blocks),
        sms=f"Hi {ctx.greeting_name}, it's been a while! Whenever {needs} "
        "need" + ("s" if vehicle else "") + f" us, we're here.{extra} {book_sms}".rstrip(),
        sms_link=link,
        commercial=True,
    )


def _recovery_check_in(ctx: _Context) -> _Draft:
    vehicle = ctx.opt("vehicle")
    link = ctx.url("link")
    blocks: list[_Block] = [
        "We are checking in after we resolved your recent concern. Is everything still "
        f"working as it should{_on(vehicle)}?",
    ]
    if link:
        blocks.append(_Link("Tell us how it is going", link))
    blocks.append(
        f"If anything is still not right, reply to this email{_call(ctx)} and we will make "
        "it right."
    )
    ask = "Tell us:" if link else "Just reply to let us know."
    return _Draft(
        subject=f"Checking in from {ctx.shop}",
        blocks=tuple(blocks),
        sms=f"Hi {ctx.greeting_name}, checking in after we resolved your recent concern. Is "
        f"everything still working as it should{_on(vehicle)}? {ask}",
        sms_link=link,
    )


def _staff_notification(ctx: _Context) -> _Draft:
    summary = ctx.req("summary", _SUMMARY_MAX)
    # Staff need to know who: the full name, unlike a customer greeting.
    customer = ctx.opt("customer_name", _NAME_MAX * 2)
    staff = ctx.opt("staff_name", _NAME_MAX)
    link = ctx.url("link")
    about = f" Customer: {customer}." if customer else ""
    sentence = summary if summary[-1] in ".!?" else summary + "."
    blocks: list[_Block] = [sentence + about]
    if link:
        blocks.append(_Link("Open in Regulars", link))
    hello = f"Hi {_first_word(staff)}. " if staff else ""
    return _Draft(
        subject=clip(f"[{ctx.shop}] {summary}", _SUBJECT_MAX),
        blocks=tuple(blocks),
        sms=f"{hello}{sentence}{about}",
        sms_link=link,
        greeting=False,
    )


def _opt_out_confirmation(ctx: _Context) -> _Draft:
    # FCC 24-24: one confirmation, no marketing, nothing else until the customer answers.
    text = "You're unsubscribed and will get no more texts from us. Reply START to resubscribe."
    return _Draft(subject="", blocks=(), sms=text, greeting=False)


def _help(ctx: _Context) -> _Draft:
    phone = ctx.req("shop_phone", 30)
    program = ctx.opt("program", 60) or "Service follow-ups & reminders"
    frequency = ctx.opt("message_frequency", 60) or "Msg frequency varies"
    text = f"{program}. {frequency}. Help: {phone}. Msg & data rates may apply."
    return _Draft(subject="", blocks=(), sms=text, greeting=False)


_TEMPLATES: dict[Kind, Callable[[_Context], _Draft]] = {
    Kind.SURVEY: _survey,
    Kind.REVIEW_REQUEST: _review_request,
    Kind.REFERRAL_REQUEST: _referral_request,
    Kind.REMINDER: _reminder,
    Kind.BIRTHDAY: _birthday,
    Kind.THANK_YOU: _thank_you,
    Kind.WIN_BACK: _win_back,
    Kind.RECOVERY_CHECK_IN: _recovery_check_in,
    Kind.STAFF_NOTIFICATION: _staff_notification,
    Kind.OPT_OUT_CONFIRMATION: _opt_out_confirmation,
    Kind.HELP: _help,
}


# ---------------------------------------------------------------------------- channels


def _render_sms(ctx: _Context, kind: Kind, draft: _Draft) -> RenderedMessage:
    footer = {Kind.OPT_OUT_CONFIRMATION: "", Kind.HELP: HELP_FOOTER}.get(kind, STOP_FOOTER)
    prefix = f"{ctx.shop}: "
    # The link and the opt-out line are never shortened: a cut link is useless and the
    # opt-out line is the law. The words in between give way instead.
    # A line break, not a period, after the link: a trailing period breaks some links.
    tail = (f" {draft.sms_link}" if draft.sms_link else "") + (f"\n{footer}" if footer else "")
    room = SMS_MAX - len(prefix) - len(tail)
    if room < 40:
        raise ValueError("context['link'] is too long to fit in a text message")
    text = prefix + clip(draft.sms, room) + tail
    assert len(text) <= SMS_MAX
    return RenderedMessage(subject=None, text=text, html=None, commercial=draft.commercial)


def _render_email(ctx: _Context, kind: Kind, draft: _Draft) -> RenderedMessage:
    to_customer = kind is not Kind.STAFF_NOTIFICATION
    unsubscribe = ctx.req_url("unsubscribe_url") if to_customer else ctx.url("unsubscribe_url")
    address = ctx.address_lines(required=draft.commercial)
    phone = ctx.opt("shop_phone", 30)
    if draft.greeting:
        blocks: list[_Block] = [f"Hi {ctx.greeting_name},", *draft.blocks]
    else:
        staff = ctx.opt("staff_name", _NAME_MAX)
        first = _first_word(staff) if staff else None
        blocks = [f"Hi {first}," if first else "Hello,", *draft.blocks]
    if to_customer:
        blocks.append(f"The team at {ctx.shop}")
    # Staff know the shop: their footer is only the unsubscribe link, when there is one.
    footer = [ctx.shop, *address] if to_customer else []
    if phone and to_customer:
        footer.append(phone)
    if draft.commercial:
        footer.append(f"This is a promotional message from {ctx.shop}.")
    subject = clip(_one_line(draft.subject), _SUBJECT_MAX)

    text_parts = [b if isinstance(b, str) else f"{b.label}: {b.url}" for b in blocks]
    text_footer = list(footer)
    if unsubscribe:
        text_footer.append(f"Unsubscribe: {unsubscribe}")
    text = "\n\n".join(text_parts) + "\n"
    if text_footer:
        text += "\n-- \n" + "\n".join(text_footer) + "\n"

    e = html.escape
    body = "\n".join(
        f"<p>{e(b)}</p>"
        if isinstance(b, str)
        else f'<p><a href="{e(b.url, quote=True)}">{e(b.label)}</a></p>'
        for b in blocks
    )
    foot_lines = [e(line) for line in footer]
    if unsubscribe:
        foot_lines.append(f'<a href="{e(unsubscribe, quote=True)}">Unsubscribe</a>')
    foot = "<br>\n".join(foot_lines)
    if foot:
        body += f'\n<hr>\n<p style="font-size: 12px; color: #666;">{foot}</p>'
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>{e(subject)}</title></head>\n"
        '<body style="font-family: Arial, sans-serif; line-height: 1.5; color: #222;">\n'
        f"{body}\n</body>\n</html>\n"
    )
    return RenderedMessage(subject=subject, text=text, html=page, commercial=draft.commercial)
