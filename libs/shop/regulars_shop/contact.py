"""A customer's contact data as the shop's system sends it, made usable. Pure.

Shop systems send phone numbers as staff typed them: "(512) 555-0142", "512.555.0142",
"+1 512 555 0142", with or without the country. Every service downstream dials, texts and
matches replies by number, so intake turns each into E.164 once (``+15125550142``), reading
a national number in the customer's country, else the shop's. A number that cannot be a
real one there (too short, an unassigned area code) is refused rather than kept: a text to
it would fail, and the customer would look reached when they are not.

The rules of numbering plans come from Google's libphonenumber metadata (the
``phonenumbers`` package), which is kept current with the ITU and national regulators:
no hand-written pattern keeps up with new area codes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

DEFAULT_COUNTRY: Final = "US"


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: USPS codes: the 50 states, DC, the territories and the armed forces' "states"
US_STATES: Final = _codes(
    "AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS "
    "MO MT NE NV NH NJ NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV "
    "WI WY DC AS GU MP PR VI UM AA AE AP"
)
#: Canada Post's codes for the provinces and territories
CA_PROVINCES: Final = _codes("AB BC MB NB NL NS NT NU ON PE QC SK YT")
_SUBDIVISIONS: Final = {"US": US_STATES, "CA": CA_PROVINCES}
_SUBDIVISION = re.compile(r"[A-Z0-9]{1,3}")


class UnusableContact(ValueError):
    """What is wrong with one value, in words a person at the shop can act on."""


def is_country(code: str) -> bool:
    return code in phonenumbers.SUPPORTED_REGIONS


def check_country(code: str) -> str:
    """An ISO 3166-1 alpha-2 country code, upper case ("us" -> "US")."""
    upper = code.strip().upper()
    if not is_country(upper):
        raise UnusableContact(f"{code[:20]!r} is not a country code such as US, CA or GB")
    return upper


def normalise_phone(raw: str, country: str = DEFAULT_COUNTRY) -> str:
    """``raw`` in E.164, a national number read as one of ``country``; raises
    :class:`UnusableContact` for one that cannot be dialled."""
    text = raw.strip()
    if not text:
        raise UnusableContact("empty: give the number, or leave the field out")
    try:
        number = phonenumbers.parse(text, country)
    except NumberParseException:
        raise UnusableContact(
            f"{raw[:50]!r} is not a phone number (e.g. (512) 555-0142 or +15125550142)"
        ) from None
    # The right number of digits, not "a number in use": shops' systems hold fictional
    # 555 numbers and numbers of area codes newer than this copy of the metadata, and a
    # customer refused for one would be a customer lost. A local number without its area
    # code is not enough to dial.
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        raise UnusableContact(
            f"{raw[:50]!r} has the wrong number of digits for {_region_of(number) or country}"
            " (give the area code, e.g. (512) 555-0142)"
        )
    if number.country_code == 1 and str(number.national_number)[0] in "01":
        raise UnusableContact(
            f"{raw[:50]!r} cannot be dialled: an area code never starts with 0 or 1"
        )
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def readable_phone(e164: str, country: str = DEFAULT_COUNTRY) -> str:
    """How staff read a number: national for the shop's own country ("(512) 555-0142"),
    international otherwise ("+44 20 7946 0958"); a value that does not parse unchanged."""
    try:
        number = phonenumbers.parse(e164, country)
    except NumberParseException:
        return e164
    same = phonenumbers.region_code_for_number(number) == country
    return phonenumbers.format_number(
        number, PhoneNumberFormat.NATIONAL if same else PhoneNumberFormat.INTERNATIONAL
    )


def check_timezone(name: str) -> str:
    """An IANA time zone name, spelled as the zone database does ("america/chicago" ->
    "America/Chicago")."""
    canonical = _zones().get(name.strip().lower())
    if canonical is None:
        raise UnusableContact(f"{name[:60]!r} is not an IANA time zone such as 'America/Chicago'")
    try:
        ZoneInfo(canonical)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnusableContact(f"{name[:60]!r} is not an IANA time zone") from None
    return canonical


def check_state(code: str, country: str = DEFAULT_COUNTRY) -> str:
    """A state or province code of ``country``, upper case ("tx" -> "TX", "US-TX" -> "TX").
    Quiet hours and marketing windows are kept by state, so a wrong one must not pass."""
    upper = code.strip().upper().removeprefix(f"{country}-")
    known = _SUBDIVISIONS.get(country)
    if known is not None:
        if upper not in known:
            raise UnusableContact(
                f"{code[:20]!r} is not a {'US state' if country == 'US' else 'province'} code"
                f" such as {'TX' if country == 'US' else 'ON'}"
            )
    elif not _SUBDIVISION.fullmatch(upper):
        raise UnusableContact(f"{code[:20]!r} is not a state or province code")
    return upper


def _region_of(number: phonenumbers.PhoneNumber) -> str | None:
    region = phonenumbers.region_code_for_number(number)
    return region if region and region != "ZZ" else None


@lru_cache(maxsize=1)
def _zones() -> dict[str, str]:
    return {
        name.lower(): name
        for name in available_timezones()
        if "/" in name or name == "UTC"  # not "localtime", "Factory" and friends
    }
