from __future__ import annotations

import pytest
from regulars_shop.contact import (
    UnusableContact,
    check_country,
    check_state,
    check_timezone,
    normalise_phone,
    readable_phone,
)
from regulars_shop.policy import Policy


@pytest.mark.parametrize(
    "raw",
    [
        "(512) 555-0142",
        "512-555-0142",
        "512.555.0142",
        "512 555 0142",
        "5125550142",
        "1 512 555 0142",
        "1-512-555-0142",
        "+1 (512) 555-0142",
        "+15125550142",
        "  +1 512 555 0142  ",
    ],
)
def test_us_numbers_in_any_format_become_e164(raw: str) -> None:
    assert normalise_phone(raw, "US") == "+15125550142"


@pytest.mark.parametrize(
    ("raw", "country", "e164"),
    [
        ("020 7946 0958", "GB", "+442079460958"),
        ("07911 123456", "GB", "+447911123456"),
        ("(416) 555-0199", "CA", "+14165550199"),
        ("030 123456", "DE", "+4930123456"),
        ("0412 345 678", "AU", "+61412345678"),
        ("55 1234 5678", "MX", "+525512345678"),
        # a number with its own country is read as that, whatever the shop's country
        ("+44 20 7946 0958", "US", "+442079460958"),
        ("+1 512 555 0142", "GB", "+15125550142"),
    ],
)
def test_national_numbers_read_in_the_given_country(raw: str, country: str, e164: str) -> None:
    assert normalise_phone(raw, country) == e164


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("555-010-0100", "+15550100100"),  # fictional, and what a shop's test data holds
        ("+15555550100", "+15555550100"),
        ("(555) 555-0177", "+15555550177"),
    ],
)
def test_numbers_of_the_right_form_are_kept_though_not_in_use(raw: str, e164: str) -> None:
    assert normalise_phone(raw, "US") == e164


def test_the_same_digits_differ_by_country() -> None:
    assert normalise_phone("020 7946 0958", "GB") != normalise_phone("2079460958", "US")
    with pytest.raises(UnusableContact):
        normalise_phone("020 7946 0958", "US")  # no US number starts with 0


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("call me", "not a phone number"),
        ("n/a", "not a phone number"),
        ("555-0142", "digits"),  # a local number without its area code
        ("512 555 01423456", "wrong number of digits"),
        ("+1555", "wrong number of digits"),
        ("(012) 555-0142", "never starts with 0 or 1"),
        ("+1 112 555 0142", "never starts with 0 or 1"),
    ],
)
def test_unusable_numbers_are_refused_with_a_reason(raw: str, says: str) -> None:
    with pytest.raises(UnusableContact, match=says):
        normalise_phone(raw, "US")


def test_readable_phone_is_national_at_home_and_international_abroad() -> None:
    assert readable_phone("+15125550142", "US") == "(512) 555-0142"
    assert readable_phone("+442079460958", "US") == "+44 20 7946 0958"
    assert readable_phone("+442079460958", "GB") == "020 7946 0958"
    assert readable_phone("not a number", "US") == "not a number"


def test_time_zones_are_iana_names_spelled_canonically() -> None:
    assert check_timezone("America/Chicago") == "America/Chicago"
    assert check_timezone("america/chicago") == "America/Chicago"
    assert check_timezone("UTC") == "UTC"
    for bad in ("Central", "EST", "America/Springfield", "localtime", "../etc/passwd", ""):
        with pytest.raises(UnusableContact, match="IANA"):
            check_timezone(bad)


def test_state_codes_are_checked_against_the_country() -> None:
    assert check_state("tx") == "TX"
    assert check_state("US-TX") == "TX"
    assert check_state("DC") == "DC"
    assert check_state("PR") == "PR"
    assert check_state("on", "CA") == "ON"
    assert check_state("NSW"[:2], "AU") == "NS"  # elsewhere only the form is checked
    for bad in ("TT", "XX", "ON", "Texas", ""):
        with pytest.raises(UnusableContact, match="state"):
            check_state(bad, "US")
    with pytest.raises(UnusableContact, match="province"):
        check_state("TX", "CA")


def test_countries_are_iso_codes() -> None:
    assert check_country("us") == "US"
    assert check_country(" GB ") == "GB"
    for bad in ("USA", "XX", "", "U"):
        with pytest.raises(UnusableContact, match="country"):
            check_country(bad)


def test_the_shops_country_is_a_policy_setting_defaulting_to_us() -> None:
    assert Policy.defaults().country == "US"
    assert Policy.model_validate({"country": "CA"}).country == "CA"
    with pytest.raises(ValueError, match="country"):
        Policy.model_validate({"country": "Canada"})
