"""Survey answers, pure: what is accepted (from JSON or a form), what is named when not,
and the public page escaping what it shows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from regulars_feedback.domain.surveys import (
    Answer,
    InvalidAnswer,
    answerable,
    new_survey,
    parse_answer,
    survey_link,
)
from regulars_feedback.entrypoints import pages


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"nps": 0}, Answer(0, None, None)),
        ({"nps": 10, "csat": 5, "comment": " Great "}, Answer(10, 5, "Great")),
        ({"csat": 1}, Answer(None, 1, None)),
        ({"nps": "7", "csat": "", "comment": ""}, Answer(7, None, None)),  # a form
        ({"nps": 9.0}, Answer(9, None, None)),
        ({"nps": 3, "submit": "Send"}, Answer(3, None, None)),  # other fields ignored
    ],
)
def test_accepted_answers(raw: dict[str, Any], expected: Answer) -> None:
    assert parse_answer(raw) == expected


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "nps"),
        ({"comment": "just a comment"}, "nps"),
        ({"nps": "", "csat": ""}, "nps"),
        ({"nps": 11}, "nps"),
        ({"nps": -1}, "nps"),
        ({"nps": "seven"}, "nps"),
        ({"nps": True}, "nps"),
        ({"nps": 7.5}, "nps"),
        ({"csat": 0}, "csat"),
        ({"csat": 6}, "csat"),
        ({"nps": 5, "comment": 12}, "comment"),
        ({"nps": 5, "comment": "x" * 10_001}, "comment"),
        ([1, 2], "body"),
    ],
)
def test_rejected_answers_name_the_field(raw: Any, field: str) -> None:
    with pytest.raises(InvalidAnswer) as caught:
        parse_answer(raw)
    assert [p.field for p in caught.value.problems] == [field]
    assert field in str(caught.value)


def test_a_survey_link_and_its_lifetime() -> None:
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    shop, survey_id = uuid.uuid4(), uuid.uuid4()
    survey = new_survey(b"a key", shop, survey_id, "after_follow_up", now)
    assert len(survey.token) >= 40 and survey.expires_at == now + timedelta(days=30)
    # the same survey under the same key, the same token (followup makes it so); another
    # survey or another key, another
    assert survey.token == new_survey(b"a key", shop, survey_id, "after_follow_up", now).token
    assert survey.token != new_survey(b"a key", shop, uuid.uuid4(), "after_follow_up", now).token
    assert survey.token != new_survey(b"other", shop, survey_id, "after_follow_up", now).token
    assert survey_link("http://x.example/", survey.token) == f"http://x.example/s/{survey.token}"
    assert answerable("sent", survey.expires_at, now)
    assert not answerable("sent", survey.expires_at, survey.expires_at)
    assert not answerable("answered", survey.expires_at, now)


def test_the_page_escapes_everything_it_shows() -> None:
    page = pages.survey_form(
        'tok"en<', "<script>alert(1)</script> & Sons", comment="</textarea><b>x</b>"
    )
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "</textarea><b>" not in page
    assert 'action="../v1/surveys/tok%22en%3C/responses"' in page
    for n in range(11):
        assert f'name="nps" value="{n}"' in page
    assert 'name="csat" value="5"' in page and 'name="csat" value="0"' not in page
    assert 'name="viewport"' in page
    thanks = pages.thank_you("<b>Shop</b>")
    assert "<b>Shop</b>" not in thanks
