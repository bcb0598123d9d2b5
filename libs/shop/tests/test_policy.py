"""The shop's policy: defaults, validation naming the key, durations and business time."""

from __future__ import annotations

import json
from datetime import date, time, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from regulars_shop.compliance import STATE_MARKETING_RULES
from regulars_shop.policy import KeyProblem, Policy, parse_duration, validation_errors

DEFAULTS: dict[str, Any] = {
    "timezone": "America/New_York",
    "country": "US",
    "business_hours": {
        "mon": [["09:00", "18:00"]],
        "tue": [["09:00", "18:00"]],
        "wed": [["09:00", "18:00"]],
        "thu": [["09:00", "18:00"]],
        "fri": [["09:00", "18:00"]],
        "sat": [["09:00", "18:00"]],
        "sun": [],
    },
    "holidays": [],
    "follow_up_delay": "PT48H",
    "follow_up_missed_after": "PT24H",
    "follow_up_max_attempts": 3,
    "ack_sla": "PT2H",
    "ack_sla_critical": "PT30M",
    "resolve_sla": "P2D",
    "sla_at_risk_fraction": 0.25,
    "recovery_check_in_after": "P7D",
    "marketing_min_interval": "P7D",
    "comeback_window": "P30D",
    "lapsed_after": "P365D",
    "lost_after": "P730D",
    "at_risk_threshold": 0.6,
    "channels": {"sms": "on", "email": "on"},
    "staff": [],
    "contact": {
        "name": None,
        "phone": None,
        "email": None,
        "postal_address": None,
        "review_url": None,
    },
}


def errors_for(document: Any) -> list[KeyProblem]:
    with pytest.raises(ValidationError) as caught:
        Policy.model_validate(document)
    return validation_errors(caught.value)


def with_(**changes: Any) -> dict[str, Any]:
    return {**Policy.defaults().model_dump(mode="json"), **changes}


def keys_of(document: Any) -> set[str]:
    return {e["key"] for e in errors_for(document)}


# --------------------------------------------------------------------------- defaults


def test_defaults_are_the_spec() -> None:
    dumped = Policy.defaults().model_dump(mode="json")
    quiet = dumped.pop("quiet_hours")
    assert dumped == DEFAULTS
    assert quiet["federal"] == ["08:00", "21:00"]
    assert quiet["apply_state_rules_to_all"] is False
    assert set(quiet["states"]) == set(STATE_MARKETING_RULES)


def test_default_quiet_hours_come_from_the_compliance_table() -> None:
    states = Policy.defaults().model_dump(mode="json")["quiet_hours"]["states"]
    for code, rule in STATE_MARKETING_RULES.items():
        assert states[code] == rule.as_json()
    assert states["TX"]["windows"]["sun"] == [["12:00", "21:00"]]
    assert states["RI"]["windows"]["sat"] == [["10:00", "17:00"]]
    assert states["MS"]["no_sundays"] is True
    assert states["FL"]["max_per_24h"] == 3


def test_defaults_round_trip_through_json() -> None:
    text = json.dumps(Policy.defaults().model_dump(mode="json"))
    again = Policy.model_validate(json.loads(text))
    assert again == Policy.defaults()
    assert again.model_dump(mode="json") == json.loads(text)
    assert Policy.model_validate_json(text) == Policy.defaults()


def test_a_policy_round_trips_as_given() -> None:
    document = with_(
        timezone="America/Chicago",
        business_hours={
            "mon": [["07:30", "12:00"], ["13:00", "17:30"]],
            "tue": [["07:30", "17:30"]],
            "wed": [],
            "thu": [["07:30", "17:30"]],
            "fri": [["07:30", "24:00"]],
            "sat": [],
            "sun": [],
        },
        holidays=["2026-12-25", "2027-01-01"],
        follow_up_delay="P2DT1H",
        resolve_sla="P1W",
        ack_sla="PT1.5H",
        channels={"sms": "off", "email": "on"},
        staff=[
            {"id": "a1", "name": "Ann", "role": "advisor", "email": "ann@shop.example"},
            {"id": "m1", "name": "Max", "role": "service_manager", "phone": "+1 555 010 0100"},
            {"id": "o1", "name": "Oz", "role": "owner"},
        ],
    )
    policy = Policy.model_validate(document)
    dumped = policy.model_dump(mode="json")
    for member in dumped["staff"]:  # optional keys come back as null
        for key in ("email", "phone"):
            if member[key] is None:
                del member[key]
    assert dumped == document
    assert policy.holidays == [date(2026, 12, 25), date(2027, 1, 1)]


def test_left_out_keys_take_their_defaults() -> None:
    assert Policy.model_validate({}) == Policy.defaults()
    assert Policy.model_validate({"timezone": "Europe/Paris"}).ack_sla == "PT2H"


def test_the_policy_is_immutable() -> None:
    with pytest.raises(ValidationError):
        Policy.defaults().ack_sla = "PT1H"  # type: ignore[misc]


def test_json_schema_is_available() -> None:
    schema = Policy.model_json_schema()
    assert set(schema["properties"]) == set(DEFAULTS) | {"quiet_hours"}
    assert schema["additionalProperties"] is False


# --------------------------------------------------------------------------- bad values


def test_unknown_key_is_named() -> None:
    assert errors_for(with_(follow_up_dealy="PT1H")) == [
        {"key": "follow_up_dealy", "message": "unknown key 'follow_up_dealy'"}
    ]


@pytest.mark.parametrize(
    "document",
    [
        {"business_hours": {"funday": []}},
        {"channels": {"fax": "on"}},
        {"quiet_hours": {"federal": ["08:00", "21:00"], "extra": 1}},
        {"staff": [{"id": "a", "name": "A", "role": "owner", "nickname": "x"}]},
    ],
)
def test_unknown_nested_key_is_named(document: dict[str, Any]) -> None:
    (error,) = errors_for(document)
    assert error["message"].startswith("unknown key")
    assert error["key"].split(".")[-1] in {"funday", "fax", "extra", "nickname"}


def test_bad_duration_names_the_key() -> None:
    assert errors_for(with_(follow_up_delay="abc")) == [
        {
            "key": "follow_up_delay",
            "message": "'abc' is not an ISO-8601 duration (e.g. PT48H, PT30M, P2D or P1W)",
        }
    ]


@pytest.mark.parametrize(
    "key",
    [
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
    ],
)
@pytest.mark.parametrize("bad", ["abc", "48h", "PT", "P", "P2DT", "-P1D", "pt48h", 48, None])
def test_every_duration_key_is_validated(key: str, bad: Any) -> None:
    assert keys_of(with_(**{key: bad})) == {key}


@pytest.mark.parametrize("value", ["P1M", "P1Y", "P1Y2M3D", "P3MT4H"])
def test_months_and_years_are_rejected_clearly(value: str) -> None:
    (error,) = errors_for(with_(comeback_window=value))
    assert error["key"] == "comeback_window"
    assert "months" in error["message"]


def test_zero_durations() -> None:
    assert Policy.model_validate(with_(follow_up_delay="PT0S")).follow_up_delay_timedelta == (
        timedelta(0)
    )
    assert keys_of(with_(ack_sla="PT0M")) == {"ack_sla"}


def test_lost_after_must_follow_lapsed_after() -> None:
    (error,) = errors_for(with_(lost_after="P300D"))
    assert error["key"] == "lost_after"


def test_business_hours_end_before_start() -> None:
    assert errors_for(with_(business_hours={"mon": [["09:00", "08:00"]]})) == [
        {"key": "business_hours.mon.0", "message": "end 08:00 is not after start 09:00"}
    ]


def test_business_hours_overlap_names_the_day() -> None:
    bad = {"wed": [["09:00", "12:00"], ["13:00", "18:00"], ["11:00", "14:00"]]}
    (error,) = errors_for(with_(business_hours=bad))
    assert error["key"].startswith("business_hours.wed")
    assert "overlaps" in error["message"]


@pytest.mark.parametrize(
    ("pair", "fragment"),
    [
        (["24:00", "18:00"], "24:00 is only allowed as an end"),
        (["9am", "18:00"], "start '9am' is not a time HH:MM"),
        (["09:00", "25:00"], "out of range"),
        (["09:60", "18:00"], "out of range"),
        (["09:00"], "expected [start, end]"),
        (["09:00", "12:00", "18:00"], "expected [start, end]"),
    ],
)
def test_business_hours_format(pair: list[str], fragment: str) -> None:
    (error,) = errors_for(with_(business_hours={"fri": [pair]}))
    assert error["key"].startswith("business_hours.fri.0")
    assert fragment in error["message"]


def test_business_hours_24_00_is_an_end() -> None:
    policy = Policy.model_validate(with_(business_hours={"sat": [["18:00", "24:00"]]}))
    assert policy.business_hours.sat == [["18:00", "24:00"]]


def test_a_shop_must_open_some_day() -> None:
    closed: dict[str, list[list[str]]] = {
        day: [] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    }
    assert keys_of(with_(business_hours=closed)) == {"business_hours"}


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "EST5EDT/../x", 5, "Europe/" + "x" * 300])
def test_bad_timezone(zone: Any) -> None:
    assert keys_of(with_(timezone=zone)) == {"timezone"}


def test_bad_holidays_name_the_index() -> None:
    errors = errors_for(with_(holidays=["2026-12-25", "xmas", "2026-02-30", "2026-07-04T00:00"]))
    assert [e["key"] for e in errors] == ["holidays.1", "holidays.2", "holidays.3"]


@pytest.mark.parametrize("value", [0, 1, 0.0, 1.0, -0.1, 1.5, "0.25", True])
def test_bad_sla_at_risk_fraction(value: Any) -> None:
    assert keys_of(with_(sla_at_risk_fraction=value)) == {"sla_at_risk_fraction"}


@pytest.mark.parametrize("value", [-0.01, 1.01, 60, "0.6", True, None, float("nan")])
def test_bad_at_risk_threshold(value: Any) -> None:
    assert keys_of(with_(at_risk_threshold=value)) == {"at_risk_threshold"}


def test_at_risk_threshold_bad_value_is_named_with_its_range() -> None:
    assert errors_for(with_(at_risk_threshold=1.5)) == [
        {"key": "at_risk_threshold", "message": "Input should be less than or equal to 1"}
    ]


@pytest.mark.parametrize("value", [0, 0.0, 0.35, 1, 1.0])
def test_at_risk_threshold_takes_zero_to_one_inclusive(value: float) -> None:
    policy = Policy.model_validate(with_(at_risk_threshold=value))
    assert policy.at_risk_threshold == value
    assert Policy.model_validate(policy.model_dump(mode="json")) == policy


def test_a_policy_stored_before_at_risk_threshold_existed_takes_the_default() -> None:
    stored = Policy.defaults().model_dump(mode="json")
    del stored["at_risk_threshold"]
    assert Policy.model_validate(stored).at_risk_threshold == 0.6


@pytest.mark.parametrize("value", [0, -1, 21, "3", 2.5, True])
def test_bad_follow_up_max_attempts(value: Any) -> None:
    assert keys_of(with_(follow_up_max_attempts=value)) == {"follow_up_max_attempts"}


def test_channels_accept_on_off_and_booleans() -> None:
    policy = Policy.model_validate(with_(channels={"sms": False, "email": True}))
    assert policy.channels.sms == "off"
    assert policy.model_dump(mode="json")["channels"] == {"sms": "off", "email": "on"}
    assert not policy.channel_enabled("sms")
    assert policy.channel_enabled("email")
    assert keys_of(with_(channels={"sms": "maybe", "email": "on"})) == {"channels.sms"}


def test_staff_roles_and_contacts() -> None:
    staff = [
        {"id": "a1", "name": "Ann", "role": "advisor"},
        {"id": "b2", "name": "Bo", "role": "boss"},
        {"id": "c3", "name": "Cy", "role": "owner", "email": "not-an-email"},
        {"id": "d4", "name": "Di", "role": "owner", "phone": "call me"},
        {"id": "", "name": "Ed", "role": "owner"},
        {"id": "f6", "role": "owner"},
    ]
    assert keys_of(with_(staff=staff)) == {
        "staff.1.role",
        "staff.2.email",
        "staff.3.phone",
        "staff.4.id",
        "staff.5.name",
    }


def test_staff_ids_are_unique() -> None:
    staff = [
        {"id": "a1", "name": "Ann", "role": "advisor"},
        {"id": "m1", "name": "Max", "role": "service_manager"},
        {"id": "a1", "name": "Al", "role": "owner"},
    ]
    assert errors_for(with_(staff=staff)) == [
        {"key": "staff.2.id", "message": "duplicate staff id 'a1'"}
    ]


def test_quiet_hours_validation() -> None:
    states = {
        "Florida": {},
        "CT": {"windows": {"mon": [["09:00", "24:00"]]}},
        "TX": {"max_per_24h": 0},
    }
    assert keys_of(with_(quiet_hours={"states": states})) == {
        "quiet_hours.states.Florida",
        "quiet_hours.states.CT.windows.mon.0",
        "quiet_hours.states.TX.max_per_24h",
    }
    assert keys_of(with_(quiet_hours={"federal": ["21:00", "08:00"]})) == {"quiet_hours.federal"}
    assert keys_of(with_(quiet_hours={"apply_state_rules_to_all": "yes"})) == {
        "quiet_hours.apply_state_rules_to_all"
    }


def test_every_error_is_reported_at_once() -> None:
    assert keys_of(with_(ack_sla="x", timezone="Nowhere", bogus=1)) == {
        "ack_sla",
        "timezone",
        "bogus",
    }


def test_a_document_that_is_not_an_object() -> None:
    assert keys_of([1, 2]) == {"policy"}


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT48H", timedelta(hours=48)),
        ("PT30M", timedelta(minutes=30)),
        ("PT45S", timedelta(seconds=45)),
        ("P2D", timedelta(days=2)),
        ("P1W", timedelta(days=7)),
        ("P1DT2H3M4S", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("PT1.5H", timedelta(minutes=90)),
        ("PT0,5M", timedelta(seconds=30)),
        ("P0D", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "1D", "P1H", "PT1D", "P1W2D", "P1.5DT2H", "p1d", " P1D", "P1M"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|months|fraction"):
        parse_duration(text)


def test_timedelta_properties() -> None:
    policy = Policy.defaults()
    assert policy.follow_up_delay_timedelta == timedelta(hours=48)
    assert policy.follow_up_missed_after_timedelta == timedelta(hours=24)
    assert policy.ack_sla_timedelta == timedelta(hours=2)
    assert policy.ack_sla_critical_timedelta == timedelta(minutes=30)
    assert policy.resolve_sla_timedelta == timedelta(days=2)
    assert policy.recovery_check_in_after_timedelta == timedelta(days=7)
    assert policy.marketing_min_interval_timedelta == timedelta(days=7)
    assert policy.comeback_window_timedelta == timedelta(days=30)
    assert policy.lapsed_after_timedelta == timedelta(days=365)
    assert policy.lost_after_timedelta == timedelta(days=730)
    assert policy.duration("comeback_window") == timedelta(days=30)
    with pytest.raises(KeyError):
        policy.duration("timezone")


def test_sla_days_are_business_days() -> None:
    policy = Policy.defaults()
    assert policy.business_day == timedelta(hours=9)
    assert policy.resolve_sla_business == timedelta(hours=18)
    assert policy.ack_sla_business == timedelta(hours=2)
    assert policy.ack_sla_critical_business == timedelta(minutes=30)
    assert policy.business_duration("P1DT4H") == timedelta(hours=13)
    assert policy.business_duration("P1W") == timedelta(hours=63)


def test_business_day_is_the_average_open_day() -> None:
    # Mon-Fri 08:00-17:00 (9 h) and Sat 08:00-12:00 (4 h): 49 h over 6 days
    hours = {day: [["08:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    policy = Policy.model_validate(with_(business_hours={**hours, "sat": [["08:00", "12:00"]]}))
    assert policy.business_day == timedelta(hours=49) / 6
    split = Policy.model_validate(
        with_(business_hours={"mon": [["08:00", "12:00"], ["13:00", "24:00"]], "sat": []})
    )
    assert split.business_day == timedelta(hours=(15 + 4 * 9) / 5)
    assert split.resolve_sla_business == 2 * split.business_day


def test_bad_business_duration() -> None:
    with pytest.raises(ValueError, match="duration"):
        Policy.defaults().business_duration("two days")


# --------------------------------------------------------------------------- merged


def test_merged_lays_a_patch_over_the_policy() -> None:
    base = Policy.defaults()
    changed = base.merged(
        {
            "ack_sla": "PT1H",
            "business_hours": {"sat": []},
            "channels": {"email": "off"},
            "quiet_hours": {"states": {"FL": {"windows": {"mon": [["09:00", "19:00"]]}}}},
            "staff": [{"id": "a1", "name": "Ann", "role": "advisor"}],
        }
    )
    assert changed.ack_sla == "PT1H"
    assert changed.business_hours.sat == []
    assert changed.business_hours.fri == [["09:00", "18:00"]]  # untouched days stay
    assert changed.channels.sms == "on"
    assert changed.channel_enabled("email") is False
    assert changed.quiet_hours.states["FL"].windows.mon == [["09:00", "19:00"]]
    assert changed.quiet_hours.states["FL"].max_per_24h == 3  # objects merge
    assert [m.id for m in changed.staff] == ["a1"]
    assert base == Policy.defaults()  # the original is unchanged


def test_merged_replaces_lists() -> None:
    base = Policy.defaults().merged({"holidays": ["2026-12-25"]})
    assert base.merged({"holidays": ["2027-01-01"]}).holidays == [date(2027, 1, 1)]


def test_merged_validates() -> None:
    with pytest.raises(ValidationError) as caught:
        Policy.defaults().merged({"resolve_sla": "P1M", "colour": "red"})
    assert {e["key"] for e in validation_errors(caught.value)} == {"resolve_sla", "colour"}


# --------------------------------------------------------------------------- quiet hours


MONDAY = date(2026, 11, 2)
SUNDAY = date(2026, 11, 8)


def test_policy_quiet_hours_default_to_the_law() -> None:
    policy = Policy.defaults()
    assert policy.quiet_hours_window("FL", "marketing", MONDAY) == [(time(8), time(20))]
    assert policy.quiet_hours_window("FL", "service", MONDAY) == [(time(8), time(21))]
    assert policy.quiet_hours_window("MS", "marketing", SUNDAY) == []


def test_a_shop_can_tighten_quiet_hours() -> None:
    policy = Policy.defaults().merged(
        {
            "quiet_hours": {
                "federal": ["09:00", "20:00"],
                "apply_state_rules_to_all": True,
                "states": {"NY": {"windows": {"mon": [["10:00", "19:00"]]}, "no_sundays": True}},
            }
        }
    )
    assert policy.quiet_hours_window(None, "service", MONDAY) == [(time(9), time(20))]
    assert policy.quiet_hours_window("NY", "marketing", MONDAY) == [(time(10), time(19))]
    assert policy.quiet_hours_window("NY", "marketing", SUNDAY) == []
    assert policy.quiet_hours_window("MS", "service", SUNDAY) == []  # applied to all


def test_a_shop_cannot_loosen_quiet_hours() -> None:
    policy = Policy.defaults().merged(
        {
            "quiet_hours": {
                "federal": ["06:00", "23:00"],
                "states": {"FL": {"windows": {"mon": [["06:00", "23:00"]]}}},
            }
        }
    )
    assert policy.quiet_hours_window(None, "service", MONDAY) == [(time(8), time(21))]
    assert policy.quiet_hours_window("FL", "marketing", MONDAY) == [(time(8), time(20))]
    removed = Policy.model_validate(with_(quiet_hours={"states": {}}))
    assert removed.quiet_hours_window("MS", "marketing", SUNDAY) == []


def test_shop_holidays_are_the_default_holidays() -> None:
    christmas = date(2026, 12, 25)
    policy = Policy.defaults().merged({"holidays": ["2026-12-25"]})
    assert policy.quiet_hours_window("LA", "marketing", christmas) == []
    assert Policy.defaults().quiet_hours_window("LA", "marketing", christmas) != []
    assert (
        Policy.defaults().quiet_hours_window(
            "LA", "marketing", christmas, holidays=frozenset({christmas})
        )
        == []
    )
