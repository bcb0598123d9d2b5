"""The contract's table of consumers (regulars_events.consumers) is what each service's
bootstrap really subscribes to: the AsyncAPI document's receive operations come from it."""

from __future__ import annotations

import importlib

import pytest
from regulars_events import consumers


@pytest.mark.parametrize("service", consumers.SERVICES)
def test_the_table_is_what_the_bootstrap_consumes(service: str) -> None:
    bootstrap = importlib.import_module(f"regulars_{service}.bootstrap")
    definition = bootstrap.definition()
    assert definition.name == service
    assert sorted(definition.consumes) == sorted(consumers.consumed_topics(service))


def test_every_service_is_in_the_table() -> None:
    assert set(consumers.SERVICES) == {"intake", "followup", "feedback", "loyalty"}
