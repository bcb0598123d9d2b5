"""What both intake request paths answer for a body they cannot read."""

from __future__ import annotations

import pytest
from regulars_intake.entrypoints.guards import parse_json
from regulars_runtime.http import Problem


def test_text_that_is_not_utf8_is_422_naming_its_field() -> None:
    with pytest.raises(Problem) as refused:
        parse_json(b'{"type": "customer.upserted", "data": {"name": "Jos\xe9"}}')
    assert refused.value.status == 422
    assert refused.value.errors == [{"field": "data.name", "message": "not valid UTF-8"}]


def test_json_that_is_not_json_is_400() -> None:
    with pytest.raises(Problem) as refused:
        parse_json(b'{"type": ')
    assert refused.value.status == 400
    assert "not valid JSON" in refused.value.message
