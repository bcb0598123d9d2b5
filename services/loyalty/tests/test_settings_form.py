"""The owner's settings form and the shop policy, both ways, pure: what the form asks for
laid over the current policy, the errors the form can tell, and intake's errors put back
next to the field they came from."""

from __future__ import annotations

from typing import Any

import pytest
from regulars_loyalty.domain.settings_form import (
    SettingsChange,
    duration_parts,
    duration_value,
    hours_text,
    read_form,
    suppressed,
)
from regulars_shop.policy import Policy

DANA = {"id": "dana", "name": "Dana Whitfield", "role": "owner", "email": "dana@ortiz.example"}
SAM = {"id": "sam", "name": "Sam Ortiz", "role": "advisor", "email": None, "phone": None}
LEE = {
    "id": "lee",
    "name": "Lee Chu",
    "role": "service_manager",
    "email": "lee@ortiz.example",
    "phone": "+1 555 010 0199",
}
CONTACT = {
    "name": "Ortiz Auto",
    "phone": "+1 555 010 0100",
    "email": "desk@ortiz.example",
    "postal_address": "1 Main St, Springfield",
    "review_url": "https://g.page/ortiz/review",
}
SELF_ERROR = "You cannot remove yourself or give up the owner role here: another owner can do that."


def current_policy() -> dict[str, Any]:
    policy = Policy.defaults().model_dump(mode="json")
    policy.update(
        timezone="America/Chicago",
        lapsed_after="P200D",
        lost_after="P400D",
        holidays=["2026-12-25"],
        ack_sla="PT90M",
        resolve_sla="P3D",
        staff=[
            {**DANA, "phone": None},
            {**SAM},
            {**LEE},
        ],
        contact=dict(CONTACT),
    )
    policy["quiet_hours"] = {**policy["quiet_hours"], "federal": ["09:00", "20:00"]}
    return Policy.model_validate(policy).model_dump(mode="json")


def form_for(policy: dict[str, Any]) -> dict[str, str]:
    """The form as the settings page fills it from ``policy`` and a browser posts it."""
    form: dict[str, str] = {"csrf": "x"}
    for key, value in policy["contact"].items():
        form[f"contact.{key}"] = value or ""
    for day, ranges in policy["business_hours"].items():
        form[f"business_hours.{day}"] = hours_text(ranges)
    form["holidays"] = "\n".join(policy["holidays"])
    for key in ("ack_sla", "ack_sla_critical", "resolve_sla"):
        form[f"{key}.amount"], form[f"{key}.unit"] = duration_parts(policy[key])
    for channel, value in policy["channels"].items():
        if value == "on":
            form[f"channels.{channel}"] = "on"
    for i, member in enumerate(policy["staff"]):
        form[f"staff.{i}.was"] = member["id"]
        for field in ("id", "name", "role", "email", "phone"):
            form[f"staff.{i}.{field}"] = member.get(field) or ""
    form.update({"staff.new.was": "", "staff.new.role": "advisor"})
    for field in ("id", "name", "email", "phone"):
        form[f"staff.new.{field}"] = ""
    return form


# -- the policy, over the current one --------------------------------------------------------


def test_the_form_as_filled_gives_the_current_policy_back() -> None:
    current = current_policy()
    change = read_form(form_for(current), current, "dana")
    assert change.errors == {}
    assert change.policy == current
    assert change.staff_rows == ["0", "1", "2"]
    Policy.model_validate(change.policy)


def test_keys_the_form_does_not_show_are_kept_as_they_were() -> None:
    current = current_policy()
    form = form_for(current) | {
        "business_hours.sat": "",
        "ack_sla.amount": "4",
        "ack_sla.unit": "hours",
    }
    change = read_form(form, current, "dana")
    assert change.errors == {}
    for key in (
        "timezone",
        "quiet_hours",
        "lapsed_after",
        "lost_after",
        "follow_up_delay",
        "at_risk_threshold",
        "sla_at_risk_fraction",
    ):
        assert change.policy[key] == current[key], key
    assert change.policy["quiet_hours"]["federal"] == ["09:00", "20:00"]
    assert change.policy["lapsed_after"] == "P200D"
    assert change.policy["business_hours"]["sat"] == []
    assert change.policy["ack_sla"] == "PT4H"


def test_the_current_policy_is_not_changed_in_place() -> None:
    current = current_policy()
    before = current_policy()
    read_form(
        form_for(current) | {"contact.name": "New Name", "staff.1.remove": "on"}, current, "dana"
    )
    assert current == before


def test_a_contact_field_left_empty_is_none() -> None:
    current = current_policy()
    change = read_form(form_for(current) | {"contact.review_url": "  "}, current, "dana")
    assert change.policy["contact"] == {**CONTACT, "review_url": None}


def test_a_channel_is_on_only_when_its_box_is_ticked() -> None:
    current = current_policy()
    form = {k: v for k, v in form_for(current).items() if k != "channels.sms"}
    assert read_form(form, current, "dana").policy["channels"] == {"sms": "off", "email": "on"}


# -- opening hours and holidays --------------------------------------------------------------


def test_opening_hours_as_an_owner_writes_them() -> None:
    current = current_policy()
    form = form_for(current) | {
        "business_hours.mon": "9:00-12:00, 13:00 - 18:00",
        "business_hours.tue": "08:30\u201317:30",
        "business_hours.wed": "Closed",
        "business_hours.thu": "  ",
    }
    change = read_form(form, current, "dana")
    assert change.errors == {}
    hours = change.policy["business_hours"]
    assert hours["mon"] == [["09:00", "12:00"], ["13:00", "18:00"]]
    assert hours["tue"] == [["08:30", "17:30"]]
    assert hours["wed"] == []
    assert hours["thu"] == []
    assert hours["fri"] == [["09:00", "18:00"]]


@pytest.mark.parametrize(
    "text", ["9-5", "09:00", "09:00-18:00,", "9am-6pm", "09:00-18:00; 19:00-20:00"]
)
def test_opening_hours_that_are_not_ranges_are_an_error_on_that_day(text: str) -> None:
    current = current_policy()
    change = read_form(form_for(current) | {"business_hours.tue": text}, current, "dana")
    assert change.errors == {
        "business_hours.tue": "Tuesday: write opening hours as 09:00-18:00 (two ranges: "
        "09:00-12:00, 13:00-18:00), or leave it empty when closed."
    }


def test_holidays_one_a_line_or_comma_separated() -> None:
    current = current_policy()
    form = form_for(current) | {"holidays": "2026-12-25\r\n 2027-01-01 ,2027-07-04\n\n"}
    assert read_form(form, current, "dana").policy["holidays"] == [
        "2026-12-25",
        "2027-01-01",
        "2027-07-04",
    ]


# -- SLA windows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "unit", "value"),
    [
        ("2", "hours", "PT2H"),
        (" 45 ", "minutes", "PT45M"),
        ("3", "days", "P3D"),
        ("007", "hours", "PT7H"),
        ("PT1H30M", "iso", "PT1H30M"),
    ],
)
def test_an_sla_window(amount: str, unit: str, value: str) -> None:
    current = current_policy()
    form = form_for(current) | {"resolve_sla.amount": amount, "resolve_sla.unit": unit}
    change = read_form(form, current, "dana")
    assert change.errors == {}
    assert change.policy["resolve_sla"] == value


@pytest.mark.parametrize(
    ("amount", "unit"),
    [("0", "hours"), ("", "hours"), ("-1", "hours"), ("1.5", "hours"), ("two", "days"),
     ("2", "weeks"), ("", "iso"), ("²", "hours")],
)  # fmt: skip
def test_a_bad_sla_amount_is_an_error_and_keeps_the_current_window(amount: str, unit: str) -> None:
    current = current_policy()
    form = form_for(current) | {"ack_sla.amount": amount, "ack_sla.unit": unit}
    change = read_form(form, current, "dana")
    assert change.errors == {
        "ack_sla": "Acknowledge a case within:"
        " a whole number of minutes, hours or days, more than 0."
    }
    assert change.policy["ack_sla"] == "PT90M"


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("PT2H", ("2", "hours")),
        ("PT90M", ("90", "minutes")),
        ("P3D", ("3", "days")),
        ("PT1H30M", ("PT1H30M", "iso")),
        ("P1W", ("P1W", "iso")),
        ("", ("", "iso")),
    ],
)
def test_duration_parts(value: str, parts: tuple[str, str]) -> None:
    assert duration_parts(value) == parts


@pytest.mark.parametrize("value", ["PT2H", "PT90M", "P3D", "PT1H30M"])
def test_duration_parts_and_value_round_trip(value: str) -> None:
    assert duration_value(*duration_parts(value)) == value


def test_a_digit_that_int_cannot_read_is_not_a_window() -> None:
    # "²".isdigit() is True, int("²") raises: the form must say so, not fail
    assert duration_value("²", "hours") is None
    assert duration_value("1²", "minutes") is None


def test_hours_text() -> None:
    assert hours_text([["09:00", "12:00"], ["13:00", "18:00"]]) == "09:00-12:00, 13:00-18:00"
    assert hours_text([]) == ""


# -- staff -----------------------------------------------------------------------------------


def test_a_new_staff_member_is_added_and_an_empty_new_row_is_ignored() -> None:
    current = current_policy()
    assert read_form(form_for(current), current, "dana").policy["staff"] == current["staff"]
    form = form_for(current) | {
        "staff.new.id": " kim ",
        "staff.new.name": "Kim Park",
        "staff.new.role": "advisor",
        "staff.new.email": "kim@ortiz.example",
    }
    change = read_form(form, current, "dana")
    assert change.errors == {}
    assert change.policy["staff"][3] == {
        "id": "kim",
        "name": "Kim Park",
        "role": "advisor",
        "email": "kim@ortiz.example",
        "phone": None,
    }
    assert change.staff_rows == ["0", "1", "2", "new"]


def test_a_removed_staff_member_is_left_out() -> None:
    current = current_policy()
    change = read_form(form_for(current) | {"staff.1.remove": "on"}, current, "dana")
    assert change.errors == {}
    assert [m["id"] for m in change.policy["staff"]] == ["dana", "lee"]
    assert change.staff_rows == ["0", "2"]


def test_staff_rows_are_read_in_number_order_not_text_order() -> None:
    current = current_policy()
    current["staff"] = [{**SAM, "id": f"s{i}", "name": f"S {i}"} for i in range(11)] + [DANA]
    change = read_form(form_for(current), current, "dana")
    assert change.staff_rows == [str(i) for i in range(12)]
    assert [m["id"] for m in change.policy["staff"]][9:] == ["s9", "s10", "dana"]


def test_an_owner_removing_themselves_gets_an_error_and_stays() -> None:
    current = current_policy()
    change = read_form(form_for(current) | {"staff.0.remove": "on"}, current, "dana")
    assert change.errors == {"staff.0.role": SELF_ERROR}
    assert change.policy["staff"][0] == {**DANA, "phone": None}


def test_an_owner_giving_up_the_owner_role_gets_an_error_and_stays_owner() -> None:
    current = current_policy()
    change = read_form(form_for(current) | {"staff.0.role": "advisor"}, current, "dana")
    assert change.errors == {"staff.0.role": SELF_ERROR}
    assert change.policy["staff"][0]["role"] == "owner"


def test_an_owner_changing_their_own_staff_id_gets_an_error() -> None:
    # sessions and sign-in links name the staff id: under a new id the owner is no longer
    # on the list and is signed out at their next request, locked out as surely as by
    # removing themselves
    current = current_policy()
    change = read_form(form_for(current) | {"staff.0.id": "dana-w"}, current, "dana")
    assert set(change.errors) == {"staff.0.id"}


def test_an_owner_may_change_someone_elses_staff_id() -> None:
    current = current_policy()
    change = read_form(form_for(current) | {"staff.1.id": "sam-o"}, current, "dana")
    assert change.errors == {}
    assert [m["id"] for m in change.policy["staff"]] == ["dana", "sam-o", "lee"]


def test_another_owner_may_remove_or_demote_an_owner() -> None:
    current = current_policy()
    current["staff"].append({"id": "ana", "name": "Ana", "role": "owner", "email": None})
    form = form_for(current) | {"staff.0.role": "advisor"}
    change = read_form(form, current, "ana")
    assert change.errors == {}
    assert [(m["id"], m["role"]) for m in change.policy["staff"]] == [
        ("dana", "advisor"),
        ("sam", "advisor"),
        ("lee", "service_manager"),
        ("ana", "owner"),
    ]
    removed = read_form(form_for(current) | {"staff.0.remove": "on"}, current, "ana")
    assert removed.errors == {}
    assert [m["id"] for m in removed.policy["staff"]] == ["sam", "lee", "ana"]


def test_a_staff_list_without_an_owner_is_an_error() -> None:
    # an operator's sign-in (not on the list) makes the last owner an advisor
    current = current_policy()
    change = read_form(form_for(current) | {"staff.0.role": "advisor"}, current, "operator")
    assert change.errors == {"staff.new.role": "The shop needs at least one owner."}


# -- intake's errors, next to their fields ---------------------------------------------------


def test_intakes_errors_go_next_to_their_fields() -> None:
    change = SettingsChange({}, staff_rows=["0", "1"])
    for key in (
        "business_hours.mon.0",
        "business_hours.tue",
        "holidays.2",
        "holidays",
        "contact.email",
        "channels.sms",
        "ack_sla",
        "resolve_sla",
        "quiet_hours.federal",
        "timezone",
        "business_hours",
    ):
        change.error_for(key, f"bad {key}")
    assert change.errors == {
        "business_hours.mon": "bad business_hours.mon.0",
        "business_hours.tue": "bad business_hours.tue",
        "holidays": "bad holidays.2",
        "contact.email": "bad contact.email",
        "channels.sms": "bad channels.sms",
        "ack_sla": "bad ack_sla",
        "resolve_sla": "bad resolve_sla",
        "policy": "bad quiet_hours.federal",
    }


def test_a_removed_staff_row_shifts_intakes_staff_indices_back_to_the_form_rows() -> None:
    current = current_policy()
    form = form_for(current) | {
        "staff.1.remove": "on",
        "staff.new.id": "kim",
        "staff.new.name": "Kim Park",
        "staff.new.email": "not-an-email",
    }
    change = read_form(form, current, "dana")
    assert change.staff_rows == ["0", "2", "new"]
    # intake validates the policy that was sent: lee is staff.1 there, kim staff.2
    change.error_for("staff.1.phone", "not a phone number")
    change.error_for("staff.2.email", "not an email address")
    change.error_for("staff.0", "duplicate staff id")
    assert change.errors == {
        "staff.2.phone": "not a phone number",
        "staff.new.email": "not an email address",
        "staff.0.id": "duplicate staff id",
    }


def test_a_staff_index_past_the_rows_is_the_new_row() -> None:
    change = SettingsChange({}, staff_rows=["0"])
    change.error_for("staff.5.name", "too long")
    assert change.errors == {"staff.new.name": "too long"}


def test_the_forms_own_error_comes_before_intakes_for_the_same_field() -> None:
    change = SettingsChange({}, errors={"ack_sla": "the form's"})
    change.error_for("ack_sla", "intake's")
    assert change.errors == {"ack_sla": "the form's"}


# -- what is suppressed ----------------------------------------------------------------------


def test_nothing_is_suppressed_with_complete_contact_details() -> None:
    assert suppressed(CONTACT) == []


def test_without_a_review_link_or_postal_address_messages_are_suppressed() -> None:
    assert suppressed({**CONTACT, "review_url": None, "postal_address": ""}) == [
        "Review requests are not sent: there is no review link.",
        "Commercial email (win-back, thank-you and reminder emails) is not sent:"
        " there is no postal address (the CAN-SPAM Act requires one in every such email).",
    ]
