"""Classification: scores, the complaint lexicon, safety words and their near misses,
praise naming staff, severity."""

from __future__ import annotations

import pytest
from regulars_feedback.domain.classification import (
    StaffRef,
    classify_call,
    classify_customer_reply,
    classify_survey,
    complaint,
    graver,
    incident_key,
    manager_of,
    named_staff,
    safety_matter,
    severity,
)

STAFF = [
    StaffRef("sam", "Sam Rivera", "advisor", "sam@shop.example"),
    StaffRef("dee", "Dee Park", "advisor", "dee@shop.example"),
    StaffRef("maria", "Maria Lopez", "service_manager", "maria@shop.example"),
    StaffRef("olga", "Olga Chen", "owner", "olga@shop.example"),
]

# -- scores ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nps", "negative", "positive"),
    [
        (0, True, False),
        (6, True, False),
        (7, False, False),
        (8, False, False),
        (9, False, True),
        (10, False, True),
    ],
)
def test_nps_edges(nps: int, negative: bool, positive: bool) -> None:
    v = classify_survey(nps, None, None)
    assert (v.negative, v.positive) == (negative, positive)


@pytest.mark.parametrize(("csat", "negative"), [(1, True), (2, True), (3, False), (5, False)])
def test_csat_edges(csat: int, negative: bool) -> None:
    v = classify_survey(None, csat, None)
    assert v.negative is negative
    assert v.positive is False  # only NPS makes a promoter


def test_a_bad_csat_beside_a_promoter_score_is_negative_not_positive() -> None:
    v = classify_survey(10, 1, None)
    assert v.negative and not v.positive
    assert v.reasons == ("csat 1",)


def test_a_complaint_in_the_comment_is_negative_whatever_the_score() -> None:
    v = classify_survey(8, 4, "The service writer was rude to my wife")
    assert v.negative and v.reasons == ("complaint: rude",)
    promoter = classify_survey(10, None, "great work but I was overcharged for the oil")
    assert promoter.negative and not promoter.positive


# -- the complaint lexicon ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "rude service writer",
        "They overcharged me",
        "I feel ripped off",
        "never again",
        "I won't be back",
        "took forever to get my car",
        "it took too long",
        "same problem as before",
        "the noise is still there",
        "still not fixed",
        "they didn't fix the rattle",
        "Very disappointed.",
        "someone scratched my door",
        "Nobody called me back",
        "I want a refund",
        "Terrible experience",
    ],
)
def test_complaints(text: str) -> None:
    assert complaint(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "no complaints",
        "Nothing to complain about!",
        "not bad at all",
        "couldn't be happier",
        "it didn't take too long",
        "I was not disappointed",
        "No damage, nothing scratched",
        "fixed right the first time",
        "Back on the road in an hour",
        "thanks",
        "",
    ],
)
def test_complaint_near_misses(text: str) -> None:
    assert complaint(text) is None


# -- safety --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "brakes feel unsafe",
        "The brakes still squeal",
        "brake pedal goes to the floor",
        "brakes don't work right",
        "my brakes are grinding",
        "Steering wheel shakes at 60",
        "steering pulls to the left",
        "I smell gas since your visit",
        "there's a gas smell in the basement",
        "smells like gasoline in the cabin",
        "the furnace smells like burning",
        "CO detector went off last night",
        "carbon monoxide alarm",
        "the water heater is leaking",
        "oil leak on my driveway",
        "there was smoke from the hood",
        "the car caught fire",
        "I don't feel safe driving it",
        "not safe",
        "it's dangerous",
        "the wheel came off on the highway",
        "lug nuts were loose",
    ],
)
def test_safety_matters(text: str) -> None:
    assert safety_matter(text) is not None


@pytest.mark.parametrize(
    "text",
    [
        "brake fluid top-up was great",
        "Great job on the brakes, but the waiting room was dirty",
        "brakes work great now",
        "the brakes don't squeal anymore",
        "new tires, no problems",
        "they checked for leaks, none found",
        "no leaks",
        "passed the leak test",
        "smoke detector installed",
        "gas mileage is better",
        "Firestone tires at a fair price",
        "spark plugs replaced",
        "I'm tired of waiting",
        "feels safe again",
        "the AC works fine",
        "",
    ],
)
def test_safety_near_misses(text: str) -> None:
    assert safety_matter(text) is None


def test_a_hazard_beside_a_high_score_is_praise_for_fixing_it_not_a_complaint() -> None:
    fixed = classify_survey(10, None, "you fixed my unsafe brakes, thanks Sam!", STAFF)
    assert not fixed.negative and fixed.positive
    assert fixed.safety == "unsafe"
    worried = classify_survey(7, None, "brakes feel unsafe")
    assert worried.negative and worried.reasons == ("safety: unsafe",)


# -- calls and replies -----------------------------------------------------------------------


def test_an_unhappy_call_is_negative() -> None:
    v = classify_call(False, None, "brakes feel unsafe")
    assert v.negative and "unhappy call" in v.reasons and v.safety == "unsafe"


def test_a_satisfied_call_with_a_low_score_or_a_complaint_is_negative() -> None:
    assert classify_call(True, 5, None).negative
    assert classify_call(True, None, "said the advisor was rude").negative
    happy = classify_call(True, 10, "Loved it")
    assert not happy.negative and happy.positive


@pytest.mark.parametrize("kind", ["opt_out", "opt_in", "help"])
def test_consent_replies_are_not_feedback(kind: str) -> None:
    assert classify_customer_reply("STOP, this is terrible", kind, STAFF) is None  # type: ignore[arg-type]


def test_replies_complain_or_are_notes() -> None:
    bad = classify_customer_reply("you overcharged me and the brakes grind", "other")
    assert bad is not None and bad.negative and bad.safety is not None
    note = classify_customer_reply("Can I come in Tuesday instead?", "other")
    assert note is not None and not note.negative and not note.praise


# -- praise -----------------------------------------------------------------------------------


def test_praise_naming_staff_by_name_first_name_or_id() -> None:
    v = classify_survey(10, 5, "Thanks to Sam, he explained everything", STAFF)
    assert v.praise and [m.id for m in v.staff] == ["sam"]
    both = classify_survey(9, None, "Maria Lopez and dee were great", STAFF)
    assert {m.id for m in both.staff} == {"maria", "dee"}


def test_no_praise_without_kind_words_or_in_a_complaint() -> None:
    assert not classify_survey(8, None, "Sam called me on Tuesday", STAFF).praise
    assert not classify_survey(2, None, "Sam was great but the car is worse", STAFF).praise


def test_a_first_name_two_staff_share_does_not_name_either() -> None:
    staff = [StaffRef("a1", "Chris Poe", "advisor"), StaffRef("a2", "Chris Lee", "advisor")]
    assert named_staff("Chris was great", staff) == []
    assert [m.id for m in named_staff("Chris Lee was great", staff)] == ["a2"]


def test_the_manager_of_each_role() -> None:
    sam, maria, olga = STAFF[0], STAFF[2], STAFF[3]
    assert manager_of(sam, STAFF) == maria
    assert manager_of(maria, STAFF) == olga
    assert manager_of(olga, STAFF) is None
    assert manager_of(sam, [sam, olga]) == olga


# -- severity ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nps", "csat", "text", "earlier", "expected"),
    [
        (5, None, "brakes feel unsafe", 0, "critical"),
        (None, None, "I smell gas", 0, "critical"),
        (5, None, "the CO detector keeps beeping", 0, "critical"),
        (6, None, "slow", 1, "critical"),
        (3, None, None, 0, "high"),
        (0, None, None, 0, "high"),
        (None, 1, None, 0, "high"),
        (4, None, None, 0, "normal"),
        (None, 2, None, 0, "normal"),
        (5, None, "brake fluid top-up was great, the wait was not", 0, "normal"),
        (None, None, "rude", 0, "normal"),
    ],
)
def test_severity(
    nps: int | None, csat: int | None, text: str | None, earlier: int, expected: str
) -> None:
    assert severity(nps=nps, csat=csat, text=text, earlier_incidents=earlier) == expected


def test_graver_and_incident_keys() -> None:
    assert graver("normal", "critical") == "critical"
    assert graver("high", "normal") == "high"
    assert incident_key("c1", "ro-9") == "c1|ro:ro-9"
    assert incident_key("c1", None) == "c1|customer"
