"""A follow-up call as the advisor reads it, pure: names filled in, and no placeholder
ever read out to a customer."""

from __future__ import annotations

import pytest
from regulars_loyalty.domain.call_sheet import call_sheet, first_name, spoken, staff_name

NAMES = {"sam": "Sam Ortiz", "dana": "Dana Whitfield"}
OPENING = "Hi {customer_first_name}, this is {advisor} from Ortiz Auto."


def test_a_staff_name_from_the_list_else_the_id_as_sent() -> None:
    assert staff_name(NAMES, "sam") == "Sam Ortiz"
    assert staff_name(NAMES, "A-17") == "A-17"
    assert staff_name({"sam": ""}, "sam") == "sam"
    assert staff_name(NAMES, None) is None
    assert staff_name(NAMES, "") is None


@pytest.mark.parametrize(
    ("full", "first"),
    [
        ("Maria Lopez", "Maria"),
        ("  Lee   Ann Chu ", "Lee"),
        ("Cher", "Cher"),
        ("", "there"),
        ("   ", "there"),
        (None, "there"),
    ],
)
def test_first_name(full: str | None, first: str) -> None:
    assert first_name(full) == first


def test_the_opening_line_names_the_customer_and_the_advisor() -> None:
    assert spoken([OPENING], advisor="Sam Ortiz", customer="Maria Lopez") == [
        "Hi Maria, this is Sam Ortiz from Ortiz Auto."
    ]


def test_a_customer_without_a_name_is_greeted_as_there() -> None:
    assert spoken([OPENING], advisor="Sam", customer=None) == [
        "Hi there, this is Sam from Ortiz Auto."
    ]


def test_advisor_never_survives_in_any_line_or_any_number_of_times() -> None:
    lines = [
        "{advisor}",
        "This is {advisor}; {advisor} will call back.",
        "{advisor}'s number is on the invoice.",
        "No placeholder here.",
    ]
    out = spoken(lines, advisor="Sam", customer="Maria Lopez")
    assert out == [
        "Sam",
        "This is Sam; Sam will call back.",
        "Sam's number is on the invoice.",
        "No placeholder here.",
    ]
    assert not any("{advisor}" in line for line in out)


def test_an_unknown_placeholder_is_removed_without_a_double_space() -> None:
    lines = [
        "Hi {customer_first_name}, this is {advisor} {unknown_thing} from Ortiz Auto.",
        "{unknown_thing} How was the visit?",
        "Thanks for coming in {unknown_thing}.",
        "Hi {unknown_thing}, it's Sam.",
        "Your {make} {model} is ready.",
        "Trailing {unknown_thing}",
    ]
    assert spoken(lines, advisor="Sam", customer="Maria") == [
        "Hi Maria, this is Sam from Ortiz Auto.",
        "How was the visit?",
        "Thanks for coming in.",
        "Hi, it's Sam.",
        "Your is ready.",
        "Trailing",
    ]


def test_placeholders_are_case_sensitive_and_an_unknown_case_is_removed() -> None:
    assert spoken(["This is {Advisor}."], advisor="Sam", customer=None) == ["This is."]


def test_braces_that_are_not_a_placeholder_are_left_alone() -> None:
    lines = ["Code {12} and { advisor } stay.", "Set {}."]
    assert spoken(lines, advisor="Sam", customer=None) == lines


def test_removing_an_unknown_placeholder_does_not_make_advisor_out_of_the_rest() -> None:
    # "a person must never read {advisor} to a customer": what is left once an unknown
    # placeholder comes out is not a placeholder either
    out = spoken(["This is {adv{unknown_thing}isor}."], advisor="Sam", customer=None)
    assert not any("{advisor}" in line for line in out), out


def test_a_line_that_is_not_text_is_read_as_text() -> None:
    assert spoken([42], advisor="Sam", customer=None) == ["42"]  # type: ignore[list-item]


# -- the sheet -------------------------------------------------------------------------------


def task(**script: object) -> dict[str, object]:
    return {
        "assignee": "sam",
        "script": {
            "customer": "Maria Lopez",
            "lines": [OPENING, "Is everything working the way it should?"],
            "why": ["missed_follow_up", 3],
            "work_performed": "Brake pads",
            "vehicle_or_unit": "2019 Civic",
            **script,
        },
    }


def test_the_assignee_calls_by_their_name_from_the_staff_list() -> None:
    assert call_sheet(task(), NAMES, caller="Dana Whitfield") == {
        "advisor": "Sam Ortiz",
        "lines": [
            "Hi Maria, this is Sam Ortiz from Ortiz Auto.",
            "Is everything working the way it should?",
        ],
        "why": ["missed_follow_up", "3"],
        "work_performed": "Brake pads",
        "vehicle_or_unit": "2019 Civic",
    }


def test_an_assignee_not_on_the_staff_list_is_named_by_their_id() -> None:
    sheet = call_sheet({**task(), "assignee": "A-17"}, NAMES, caller="Dana Whitfield")
    assert sheet["advisor"] == "A-17"
    assert sheet["lines"][0] == "Hi Maria, this is A-17 from Ortiz Auto."


def test_an_unassigned_call_is_read_by_whoever_is_signed_in() -> None:
    sheet = call_sheet({**task(), "assignee": None}, NAMES, caller="Dana Whitfield")
    assert sheet["advisor"] == "Dana Whitfield"
    assert sheet["lines"][0] == "Hi Maria, this is Dana Whitfield from Ortiz Auto."


def test_a_task_without_a_script_is_an_empty_sheet() -> None:
    assert call_sheet({"assignee": None}, NAMES, caller="Dana") == {
        "advisor": "Dana",
        "lines": [],
        "why": [],
        "work_performed": None,
        "vehicle_or_unit": None,
    }
