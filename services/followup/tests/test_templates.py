from __future__ import annotations

import re
import unicodedata
from typing import Any

import pytest
from regulars_followup.domain.templates import (
    SMS_MAX,
    STOP_FOOTER,
    Kind,
    clip,
    render,
)

LINK = "https://regulars.example/s/abc123"
UNSUB = "https://regulars.example/u/tok-9"

BASE: dict[str, Any] = {
    "customer_name": "Dana Whitfield",
    "shop_name": "Main St Auto",
    "shop_phone": "(555) 010-2030",
    "shop_address": "12 Main St\nSpringfield, IL 62701",
    "link": LINK,
    "unsubscribe_url": UNSUB,
    "vehicle": "2019 Honda CR-V",
    "service_due": "an oil change",
    "summary": "Recovery case escalated to you",
    "staff_name": "Sam Ortiz",
}

CUSTOMER_KINDS = [k for k in Kind if k is not Kind.STAFF_NOTIFICATION]
EMAIL_KINDS = [k for k in Kind if k not in (Kind.HELP, Kind.OPT_OUT_CONFIRMATION)]
INCENTIVE_WORDS = re.compile(
    r"\b(discount|coupon|reward|gift|free|prize|win|off|offer|\$|%|credit|points)\b", re.I
)


def ctx(**over: Any) -> dict[str, Any]:
    return {**BASE, **over}


@pytest.mark.parametrize("kind", [k for k in Kind if k is not Kind.OPT_OUT_CONFIRMATION])
def test_every_sms_names_the_shop_first_and_ends_with_how_to_stop(kind: Kind) -> None:
    msg = render(kind, "sms", ctx())
    assert msg.text.startswith("Main St Auto: ")
    stop = "Reply STOP to cancel" if kind is Kind.HELP else STOP_FOOTER
    assert msg.text.endswith(stop)
    assert len(msg.text) <= SMS_MAX
    assert msg.subject is None and msg.html is None


def test_opt_out_confirmation_is_one_plain_confirmation() -> None:
    msg = render("opt_out_confirmation", "sms", ctx(offer="20% off brakes"))
    assert "unsubscribed" in msg.text and "START" in msg.text
    assert "STOP" not in msg.text  # nothing asks the customer to stop again
    assert not INCENTIVE_WORDS.search(msg.text) and LINK not in msg.text
    assert msg.commercial is False


def test_help_reply_carries_the_ctia_elements() -> None:
    msg = render("help", "sms", ctx(message_frequency="Up to 4 msgs/month"))
    for part in (
        "Main St Auto",
        "(555) 010-2030",
        "Up to 4 msgs/month",
        "Msg & data rates may apply",
        "Reply STOP to cancel",
    ):
        assert part in msg.text
    assert "Msg frequency varies" in render("help", "sms", ctx()).text


def test_help_needs_a_contact() -> None:
    with pytest.raises(ValueError, match="shop_phone"):
        render("help", "sms", ctx(shop_phone=None))


@pytest.mark.parametrize("kind", CUSTOMER_KINDS)
@pytest.mark.parametrize("channel", ["sms", "email"])
def test_greetings_use_the_first_name_only(kind: Kind, channel: str) -> None:
    if channel == "email" and kind in (Kind.HELP, Kind.OPT_OUT_CONFIRMATION):
        return
    msg = render(kind, channel, ctx())
    assert "Whitfield" not in msg.text
    if kind not in (Kind.HELP, Kind.OPT_OUT_CONFIRMATION):
        assert "Dana" in msg.text


def test_first_name_from_last_comma_first_and_all_caps_exports() -> None:
    assert "Hi Dana," in render("survey", "sms", ctx(customer_name="WHITFIELD, DANA")).text
    assert "Hi there," in render("survey", "sms", ctx(customer_name=None)).text


def test_staff_notification_names_the_customer_in_full() -> None:
    msg = render("staff_notification", "sms", ctx())
    assert "Hi Sam." in msg.text and "Dana Whitfield" in msg.text and "Ortiz" not in msg.text


@pytest.mark.parametrize("kind", [Kind.SURVEY, Kind.REVIEW_REQUEST])
@pytest.mark.parametrize("channel", ["sms", "email"])
def test_missing_required_link_names_the_key(kind: Kind, channel: str) -> None:
    with pytest.raises(ValueError, match=r"'link'"):
        render(kind, channel, ctx(link=None))


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        (Kind.REMINDER, "service_due"),
        (Kind.STAFF_NOTIFICATION, "summary"),
        (Kind.SURVEY, "shop_name"),
    ],
)
def test_other_missing_keys_are_named(kind: Kind, key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        render(kind, "sms", ctx(**{key: None}))


def test_unknown_kind_and_channel_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown message kind"):
        render("newsletter", "sms", ctx())
    with pytest.raises(ValueError, match="channel"):
        render("survey", "fax", ctx())
    with pytest.raises(ValueError, match="no email form"):
        render("help", "email", ctx())


def test_long_values_are_truncated_but_the_link_and_stop_line_survive() -> None:
    long_vehicle = "Ford F-150 Super Duty Lariat " * 20
    long_link = "https://regulars.example/s/" + "x" * 150
    msg = render(
        "recovery_check_in",
        "sms",
        ctx(customer_name="Bartholomew-Maximilian " * 10, vehicle=long_vehicle, link=long_link),
    )
    assert len(msg.text) <= SMS_MAX
    assert msg.text.startswith("Main St Auto: Hi Bartholomew-Maximilian, checking in")
    assert msg.text.endswith(f"... {long_link}\n{STOP_FOOTER}")


def test_a_link_too_long_for_a_text_is_refused() -> None:
    with pytest.raises(ValueError, match="link"):
        render("survey", "sms", ctx(link="https://x.example/" + "a" * 290))


@pytest.mark.parametrize(
    "piece",
    [
        "e\u0301",  # e + combining acute accent
        "\U0001f468\u200d\U0001f527",  # man mechanic: ZWJ sequence
        "\U0001f1fa\U0001f1f8",  # US flag: regional-indicator pair
        "\U0001f44d\U0001f3fd",  # thumbs up + skin tone
    ],
)
def test_truncation_never_splits_a_character(piece: str) -> None:
    text = piece * 200
    for limit in range(10, 40):
        out = clip(text, limit)
        assert len(out) <= limit and out.endswith("...")
        kept = out[: -len("...")]
        # what is kept is a whole number of pieces (NFC may have composed e + accent)
        normalized = unicodedata.normalize("NFC", piece)
        assert kept.replace(normalized, "").replace(piece, "") == ""


def test_clip_prefers_a_word_boundary() -> None:
    assert clip("brake pads and rotors replaced", 20) == "brake pads and..."
    assert clip("short", 20) == "short"


def test_values_cannot_forge_lines_or_controls() -> None:
    msg = render(
        "survey", "sms", ctx(customer_name="Dana\nReply YES to win\x07", vehicle="a\u202eb")
    )
    assert msg.text.count("\n") == 1  # only the line before the STOP footer
    assert "\x07" not in msg.text and "\u202e" not in msg.text
    mail = render("survey", "email", ctx(shop_name="Main St\r\nBcc: x@example.com"))
    assert mail.subject is not None and "\n" not in mail.subject and "\r" not in mail.subject


@pytest.mark.parametrize("kind", [Kind.BIRTHDAY, Kind.WIN_BACK, Kind.REFERRAL_REQUEST])
def test_commercial_email_has_postal_address_unsubscribe_and_ad_notice(kind: Kind) -> None:
    msg = render(kind, "email", ctx(offer="10% off your next visit"))
    assert msg.commercial is True
    assert msg.html is not None
    for body in (msg.text, msg.html):
        assert "12 Main St" in body and "Springfield, IL 62701" in body
        assert UNSUB in body
        assert "promotional message from Main St Auto" in body
    assert f'<a href="{UNSUB}">Unsubscribe</a>' in msg.html


@pytest.mark.parametrize("kind", [Kind.BIRTHDAY, Kind.WIN_BACK])
def test_commercial_email_without_postal_address_is_refused(kind: Kind) -> None:
    with pytest.raises(ValueError, match="shop_address"):
        render(kind, "email", ctx(shop_address=None))
    with pytest.raises(ValueError, match="unsubscribe_url"):
        render(kind, "email", ctx(unsubscribe_url=None))


@pytest.mark.parametrize(
    "kind",
    [
        Kind.SURVEY,
        Kind.REVIEW_REQUEST,
        Kind.REMINDER,
        Kind.RECOVERY_CHECK_IN,
        Kind.THANK_YOU,
    ],
)
def test_transactional_email_still_carries_the_unsubscribe_link(kind: Kind) -> None:
    msg = render(kind, "email", ctx(shop_address=None))
    assert msg.commercial is False
    assert msg.html is not None and msg.subject
    assert f"Unsubscribe: {UNSUB}" in msg.text and UNSUB in msg.html
    assert "promotional" not in msg.text


def test_thank_you_turns_commercial_with_an_offer() -> None:
    assert render("thank_you", "sms", ctx()).commercial is False
    with_offer = render("thank_you", "email", ctx(offer="a free car wash"))
    assert with_offer.commercial is True and "a free car wash" in with_offer.text
    assert "12 Main St" in with_offer.text


def test_only_offer_kinds_render_an_offer() -> None:
    for kind in (Kind.SURVEY, Kind.REMINDER, Kind.RECOVERY_CHECK_IN):
        assert "car wash" not in render(kind, "sms", ctx(offer="a free car wash")).text
    assert "car wash" in render("birthday", "sms", ctx(offer="a free car wash")).text


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_review_request_is_the_same_whatever_the_score(channel: str) -> None:
    unhappy = render("review_request", channel, ctx(score=2, nps=2, sentiment="negative"))
    happy = render("review_request", channel, ctx(score=10, nps=10, sentiment="positive"))
    assert unhappy == happy
    assert LINK in happy.text
    assert not INCENTIVE_WORDS.search(happy.text)
    assert not re.search(r"\b(5|five)[- ]stars?\b|happy|satisfied|positive", happy.text, re.I)


@pytest.mark.parametrize("key", ["offer", "incentive", "discount", "reward", "coupon", "gift"])
def test_review_request_refuses_any_incentive(key: str) -> None:
    with pytest.raises(ValueError, match="incentive"):
        render("review_request", "email", ctx(**{key: "$10 off"}))


def test_html_is_escaped() -> None:
    msg = render(
        "win_back",
        "email",
        ctx(
            customer_name="<script>alert(1)</script> Lee",
            shop_name="A&B <Auto>",
            link='https://r.example/s?a=1&b="x"',
        ),
    )
    assert msg.html is not None
    assert "<script>" not in msg.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in msg.html
    assert "A&amp;B &lt;Auto&gt;" in msg.html
    assert 'href="https://r.example/s?a=1&amp;b=&quot;x&quot;"' in msg.html
    # the text part is not HTML: nothing escaped there
    assert "A&B <Auto>" in msg.text


@pytest.mark.parametrize("bad", ["javascript:alert(1)", "ftp://x.example/a", "https://x y.example"])
def test_only_web_links_are_accepted(bad: str) -> None:
    with pytest.raises(ValueError, match="'link'"):
        render("survey", "email", ctx(link=bad))


def test_subjects_are_truthful_and_name_the_shop() -> None:
    subjects = {k: render(k, "email", ctx()).subject for k in EMAIL_KINDS}
    assert subjects[Kind.BIRTHDAY] == "Happy birthday from Main St Auto"
    assert subjects[Kind.SURVEY] == "How was your visit to Main St Auto?"
    assert subjects[Kind.REMINDER] == "Reminder: your 2019 Honda CR-V is due for an oil change"
    assert subjects[Kind.STAFF_NOTIFICATION] == "[Main St Auto] Recovery case escalated to you"


def test_staff_email_needs_no_unsubscribe_and_has_no_shop_footer() -> None:
    msg = render("staff_notification", "email", ctx(unsubscribe_url=None))
    assert msg.html is not None and "Unsubscribe" not in msg.text
    assert "Dana Whitfield" in msg.text and "Hi Sam," in msg.text
