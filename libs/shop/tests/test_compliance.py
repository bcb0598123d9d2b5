"""The messaging rules of COMPLIANCE.md, as encoded in regulars_shop.compliance."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from regulars_shop import compliance as c
from regulars_shop.compliance import (
    FEDERAL_WINDOW,
    HELP_KEYWORDS,
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    STATE_MARKETING_RULES,
    allowed_at,
    classify_reply,
    opt_out_channels,
    quiet_hours_window,
)

# 2026-11-02 is a Monday; 2026-11-07 a Saturday; 2026-11-08 a Sunday.
MONDAY = date(2026, 11, 2)
SATURDAY = date(2026, 11, 7)
SUNDAY = date(2026, 11, 8)
THANKSGIVING = date(2026, 11, 26)  # a Thursday
HOLIDAYS = frozenset({THANKSGIVING})


def t(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute))


def w(start: str, end: str) -> list[tuple[time, time]]:
    return [(t(start), t(end))]


FEDERAL = w("08:00", "21:00")


# --------------------------------------------------------------------------- the tables


def test_rules_version_and_federal_window() -> None:
    assert c.RULES_VERSION == "2026-11"
    assert (FEDERAL_WINDOW.start, FEDERAL_WINDOW.end) == (time(8), time(21))
    assert FEDERAL_WINDOW.citation == "47 CFR 64.1200(c)(1)"


def test_the_table_has_exactly_the_listed_states_each_with_a_citation() -> None:
    listed = {"FL", "OK", "MD", "MS", "CT", "TX", "WA", "LA", "AL", "UT", "RI", "KY", "NJ", "VA"}
    assert set(STATE_MARKETING_RULES) == listed
    for code, rule in STATE_MARKETING_RULES.items():
        assert rule.state == code
        assert rule.citation
        assert len(rule.windows) == 7


@pytest.mark.parametrize(
    ("state", "citation"),
    [
        ("FL", "Fla. Stat. 501.616(6)"),
        ("OK", "15 O.S. 775C.4"),
        ("MD", "Md. Com. Law 14-4502"),
        ("MS", "Miss. Code 77-3-723"),
        ("CT", "Conn. Gen. Stat. 42-288a"),
        ("TX", "Tex. Bus. & Com. Code 301.051"),
        ("WA", "RCW 19.158.040(2)"),
        ("LA", "La. R.S. 45:844.12; LPSC R-29617"),
        ("AL", "Ala. Admin. Code r. 770-X-5-.17"),
        ("UT", "Utah Code 13-25a-103"),
        ("RI", "R.I. Gen. Laws 5-61-3.6"),
        ("KY", "KRS 367.46955"),
        ("NJ", "N.J.S.A. 56:8-128"),
        ("VA", "Va. Code 59.1-511"),
    ],
)
def test_citations(state: str, citation: str) -> None:
    assert STATE_MARKETING_RULES[state].citation == citation


def test_per_24h_caps_only_for_fl_ok_md() -> None:
    caps = {code: r.max_per_24h for code, r in STATE_MARKETING_RULES.items() if r.max_per_24h}
    assert caps == {"FL": 3, "OK": 3, "MD": 3}


def test_day_bans() -> None:
    sundays = {code for code, r in STATE_MARKETING_RULES.items() if r.no_sundays}
    holidays = {code for code, r in STATE_MARKETING_RULES.items() if r.no_holidays}
    assert sundays == {"MS", "LA", "AL", "UT", "RI"}
    assert holidays == {"LA", "AL", "UT", "RI"}
    waived = {code for code, r in STATE_MARKETING_RULES.items() if r.consent_waives_day_bans}
    assert waived == {"UT"}
    assert "consent" in STATE_MARKETING_RULES["UT"].notes


def test_rule_rows_are_frozen() -> None:
    with pytest.raises(AttributeError):
        STATE_MARKETING_RULES["FL"].max_per_24h = 5  # type: ignore[misc]


def test_as_json_is_plain_data() -> None:
    data = STATE_MARKETING_RULES["TX"].as_json()
    assert data["windows"] == {
        "mon": [["09:00", "21:00"]],
        "tue": [["09:00", "21:00"]],
        "wed": [["09:00", "21:00"]],
        "thu": [["09:00", "21:00"]],
        "fri": [["09:00", "21:00"]],
        "sat": [["09:00", "21:00"]],
        "sun": [["12:00", "21:00"]],
    }
    assert data["citation"] == "Tex. Bus. & Com. Code 301.051"


# --------------------------------------------------------------------------- quiet hours

WEEKDAY_MARKETING = {
    "FL": w("08:00", "20:00"),
    "OK": w("08:00", "20:00"),
    "MD": w("08:00", "20:00"),
    "MS": w("08:00", "20:00"),
    "CT": w("09:00", "20:00"),
    "TX": w("09:00", "21:00"),
    "WA": w("08:00", "20:00"),
    "LA": w("08:00", "20:00"),
    "AL": w("08:00", "20:00"),
    "UT": w("08:00", "21:00"),
    "RI": w("09:00", "18:00"),
    "KY": w("10:00", "21:00"),
    "NJ": w("08:00", "21:00"),
    "VA": w("08:00", "21:00"),
}


@pytest.mark.parametrize(("state", "expected"), sorted(WEEKDAY_MARKETING.items()))
def test_every_state_weekday_marketing_window(
    state: str, expected: list[tuple[time, time]]
) -> None:
    assert quiet_hours_window(state, "marketing", MONDAY) == expected


@pytest.mark.parametrize("state", sorted(WEEKDAY_MARKETING))
def test_service_messages_use_the_federal_window_only(state: str) -> None:
    assert quiet_hours_window(state, "service", MONDAY) == FEDERAL
    assert quiet_hours_window(state, "service", SUNDAY, holidays=HOLIDAYS) == FEDERAL
    assert quiet_hours_window(state, "service", THANKSGIVING, holidays=HOLIDAYS) == FEDERAL


@pytest.mark.parametrize("state", sorted(WEEKDAY_MARKETING))
def test_a_shop_can_apply_state_rules_to_everything(state: str) -> None:
    assert (
        quiet_hours_window(state, "service", MONDAY, apply_state_rules_to_all=True)
        == WEEKDAY_MARKETING[state]
    )


def test_texas_sunday_starts_at_noon() -> None:
    assert quiet_hours_window("TX", "marketing", SUNDAY) == w("12:00", "21:00")
    assert quiet_hours_window("TX", "marketing", SATURDAY) == w("09:00", "21:00")


def test_rhode_island_saturday_and_no_sunday() -> None:
    assert quiet_hours_window("RI", "marketing", SATURDAY) == w("10:00", "17:00")
    assert quiet_hours_window("RI", "marketing", SUNDAY) == []
    assert quiet_hours_window("RI", "marketing", SUNDAY, prior_express_consent=True) == []


@pytest.mark.parametrize("state", ["MS", "LA", "AL", "UT", "RI"])
def test_sunday_ban(state: str) -> None:
    assert quiet_hours_window(state, "marketing", SUNDAY) == []


@pytest.mark.parametrize("state", ["FL", "OK", "MD", "CT", "WA", "KY", "NJ", "VA"])
def test_no_sunday_ban(state: str) -> None:
    assert quiet_hours_window(state, "marketing", SUNDAY) == WEEKDAY_MARKETING[state]


@pytest.mark.parametrize("state", ["LA", "AL", "UT", "RI"])
def test_holiday_ban(state: str) -> None:
    assert quiet_hours_window(state, "marketing", THANKSGIVING, holidays=HOLIDAYS) == []
    # not a holiday unless the caller says so
    assert quiet_hours_window(state, "marketing", THANKSGIVING) == WEEKDAY_MARKETING[state]


@pytest.mark.parametrize("state", ["MS", "FL", "TX", "KY"])
def test_holidays_do_not_matter_elsewhere(state: str) -> None:
    assert (
        quiet_hours_window(state, "marketing", THANKSGIVING, holidays=HOLIDAYS)
        == WEEKDAY_MARKETING[state]
    )


def test_utah_prior_express_consent_lifts_the_day_bans() -> None:
    assert quiet_hours_window("UT", "marketing", SUNDAY) == []
    assert quiet_hours_window("UT", "marketing", SUNDAY, prior_express_consent=True) == FEDERAL
    assert (
        quiet_hours_window(
            "UT", "marketing", THANKSGIVING, holidays=HOLIDAYS, prior_express_consent=True
        )
        == FEDERAL
    )


@pytest.mark.parametrize("state", ["MS", "LA", "AL"])
def test_consent_does_not_lift_other_states_bans(state: str) -> None:
    assert quiet_hours_window(state, "marketing", SUNDAY, prior_express_consent=True) == []


@pytest.mark.parametrize("state", [None, "", "NY", "CA", "ZZ", "Puerto Rico"])
def test_unknown_state_falls_back_to_federal(state: str | None) -> None:
    assert quiet_hours_window(state, "marketing", MONDAY) == FEDERAL
    assert quiet_hours_window(state, "marketing", SUNDAY, holidays=HOLIDAYS) == FEDERAL


def test_state_codes_are_case_insensitive() -> None:
    assert quiet_hours_window(" fl ", "marketing", MONDAY) == w("08:00", "20:00")
    assert quiet_hours_window("US-CT", "marketing", MONDAY) == w("09:00", "20:00")


def test_unknown_purpose_is_an_error() -> None:
    with pytest.raises(ValueError, match="purpose"):
        quiet_hours_window("FL", "promo", MONDAY)  # type: ignore[arg-type]


def test_allowed_at_is_half_open() -> None:
    at = datetime.combine(MONDAY, time(20))
    assert allowed_at("FL", "service", at)
    assert not allowed_at("FL", "marketing", at)
    assert allowed_at("FL", "marketing", at - timedelta(minutes=1))
    assert allowed_at(None, "service", datetime.combine(MONDAY, time(8)))
    assert not allowed_at(None, "service", datetime.combine(MONDAY, time(7, 59)))
    assert not allowed_at(None, "service", datetime.combine(MONDAY, time(21)))


def test_intersect_windows() -> None:
    a = [(t("08:00"), t("12:00")), (t("13:00"), t("21:00"))]
    b = [(t("09:00"), t("14:00"))]
    assert c.intersect_windows(a, b) == [(t("09:00"), t("12:00")), (t("13:00"), t("14:00"))]
    assert c.intersect_windows(a, []) == []


# --------------------------------------------------------------------------- keywords


def test_keyword_tables() -> None:
    assert list(OPT_OUT_KEYWORDS) == [
        "STOP",
        "QUIT",
        "END",
        "REVOKE",
        "OPT OUT",
        "CANCEL",
        "UNSUBSCRIBE",
        "STOPALL",
        "OPTOUT",
    ]
    assert set(OPT_IN_KEYWORDS) == {"START", "UNSTOP"}
    assert OPT_IN_KEYWORDS.after_confirmation == {"YES"}
    assert set(HELP_KEYWORDS) == {"HELP", "INFO"}
    assert "FCC 24-24" in OPT_OUT_KEYWORDS.citation("stop")
    assert "Twilio" in OPT_OUT_KEYWORDS.citation("STOPALL")
    assert "CTIA" in HELP_KEYWORDS.citation("HELP")
    for keywords in (OPT_OUT_KEYWORDS, OPT_IN_KEYWORDS, HELP_KEYWORDS):
        assert all(row.citation for row in keywords.rows)


def test_keyword_membership_reads_like_a_reply() -> None:
    assert " stop! " in OPT_OUT_KEYWORDS
    assert "opt-out" in OPT_OUT_KEYWORDS
    assert "yes" not in OPT_IN_KEYWORDS
    assert "stop by" not in OPT_OUT_KEYWORDS


def test_confirmation_window_and_retention() -> None:
    assert timedelta(minutes=5) == c.OPT_OUT_CONFIRMATION_WINDOW
    assert c.SMS_OPT_OUT_RETENTION_YEARS == 10
    assert "Va. Code" in c.SMS_OPT_OUT_RETENTION_CITATION
    assert c.OPT_OUT_LEDGER_RETENTION is None  # kept forever


OPT_OUT_WORDS = ["STOP", "QUIT", "END", "REVOKE", "OPT OUT", "CANCEL", "UNSUBSCRIBE", "STOPALL"]
OPT_OUT_WORDS += ["OPTOUT"]


@pytest.mark.parametrize("word", OPT_OUT_WORDS)
@pytest.mark.parametrize("shape", ["{}", " {} ", "{}.", "{}!!", '"{}"', "{} 🙏"])
def test_every_opt_out_keyword(word: str, shape: str) -> None:
    for variant in (word, word.lower(), word.title()):
        assert classify_reply(shape.format(variant)) == "opt_out"


@pytest.mark.parametrize("text", ["opt-out", "Opt_Out", "opt  out"])
def test_opt_out_spellings(text: str) -> None:
    assert classify_reply(text) == "opt_out"


PLAIN_REVOCATIONS = [
    "please stop texting me",
    "don't text me",
    "do not contact me",
    "stop messaging me",
    "unsubscribe me",
    "remove me from your list",
    "no more texts",
    "don't email me",
    "stop sending me emails",
]
MORE_REVOCATIONS = [
    "Please STOP",
    "stop it now!",
    "STOP. I sold that car last year",
    "Don\u2019t text me",
    "I want you to stop texting me",
    "I don't want any more emails",
    "take my number off your list",
    "never call or text me again",
    "I don't want to be contacted",
]


@pytest.mark.parametrize("text", PLAIN_REVOCATIONS + MORE_REVOCATIONS)
def test_plain_language_revocations(text: str) -> None:
    assert classify_reply(text) == "opt_out"
    assert classify_reply(text.upper()) == "opt_out"


MERE_MENTIONS = [
    "stop by tomorrow",
    "the brakes stop fine now",
    "I'll stop in on Monday",
    "can't stop smiling",
    "when does the end of warranty come",
]
MORE_NON_REVOCATIONS = [
    "cancel my appointment please",
    "don't call me before 10, I work nights",
    "I don't want to unsubscribe",
    "thanks for the call",
    "Please call me back about the quote",
    "the pads can't stop anything",
]


@pytest.mark.parametrize("text", MERE_MENTIONS + MORE_NON_REVOCATIONS)
def test_mere_mentions_are_not_revocations(text: str) -> None:
    assert classify_reply(text) == "other"
    assert opt_out_channels(text, "sms") == set()


@pytest.mark.parametrize("text", ["START", "start", " Unstop! ", "UNSTOP"])
def test_opt_in_keywords(text: str) -> None:
    assert classify_reply(text) == "opt_in"


def test_yes_restores_only_after_a_confirmation() -> None:
    assert classify_reply("YES") == "other"
    assert classify_reply("yes!", after_confirmation=True) == "opt_in"
    assert classify_reply("start texting again") == "other"  # restore only by keyword


@pytest.mark.parametrize("text", ["HELP", "help", "Info?", " INFO ", "help please"])
def test_help_keywords(text: str) -> None:
    assert classify_reply(text) == "help"


def test_help_in_a_sentence_is_other() -> None:
    assert classify_reply("can you help me understand this bill") == "other"


def test_stop_wins_over_help() -> None:
    assert classify_reply("help, stop texting me") == "opt_out"


# --------------------------------------------------------------------------- channels


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_bare_keyword_revokes_the_channel_it_came_on(channel: str) -> None:
    assert opt_out_channels("STOP", channel) == {channel}
    assert opt_out_channels("unsubscribe me", channel) == {channel}
    assert opt_out_channels("stop messaging me", channel) == {channel}
    assert opt_out_channels("remove me from your list", channel) == {channel}


@pytest.mark.parametrize(
    ("text", "channel", "revoked"),
    [
        ("don't email me", "sms", {"email"}),
        ("stop sending me emails", "sms", {"email"}),
        ("please stop texting me", "email", {"sms"}),
        ("no more texts", "sms", {"sms"}),
        ("do not contact me", "sms", {"sms", "email", "call"}),
        ("don't text or email me", "sms", {"sms", "email"}),
        ("stop calling me", "sms", {"call"}),
        ("stop texting me, email is fine", "sms", {"sms"}),
        ("remove me from your mailing list", "sms", {"email"}),
    ],
)
def test_named_channels(text: str, channel: str, revoked: set[str]) -> None:
    assert opt_out_channels(text, channel) == revoked


def test_no_revocation_no_channels() -> None:
    assert opt_out_channels("START", "sms") == set()
    assert opt_out_channels("HELP", "sms") == set()
    assert opt_out_channels("see you tomorrow", "email") == set()


def test_unknown_channel_is_an_error() -> None:
    with pytest.raises(ValueError, match="channel"):
        opt_out_channels("STOP", "fax")
