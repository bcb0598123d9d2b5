"""Retention windows and the idempotent producer, as settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from regulars_runtime.settings import ServiceSettings, load


class Service(ServiceSettings):
    service = "intake"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OUTBOX_RETENTION_DAYS",
        "INBOX_RETENTION_DAYS",
        "DEAD_LETTER_RETENTION_DAYS",
        "KAFKA_ENABLE_IDEMPOTENCE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/regulars")


def test_the_inbox_outlives_the_outbox_by_default() -> None:
    settings = load(Service)
    assert settings.outbox_retention == timedelta(days=7)
    assert settings.inbox_retention == timedelta(days=14)
    assert settings.dead_letter_retention == timedelta(days=30)
    assert settings.kafka.enable_idempotence is False


def test_an_inbox_kept_no_longer_than_the_outbox_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # an event published again on day 10 would not be recognised: applied twice
    monkeypatch.setenv("OUTBOX_RETENTION_DAYS", "10")
    monkeypatch.setenv("INBOX_RETENTION_DAYS", "10")
    with pytest.raises(SystemExit, match="INBOX_RETENTION_DAYS"):
        load(Service)


def test_the_idempotent_producer_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_ENABLE_IDEMPOTENCE", "true")
    assert load(Service).kafka.enable_idempotence is True
