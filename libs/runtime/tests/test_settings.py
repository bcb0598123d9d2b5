"""Settings are read once, validated, and a bad one stops the process naming it."""

from __future__ import annotations

from typing import Self

import pytest
from pydantic import model_validator
from regulars_runtime import staff
from regulars_runtime.settings import ServiceSettings, load


class ShopFacing(ServiceSettings):
    service = "feedback"

    feedback_public_url: str | None = None

    @model_validator(mode="after")
    def _public(self) -> Self:
        url = self.public_url(self.feedback_public_url, "FEEDBACK_PUBLIC_URL")
        object.__setattr__(self, "feedback_public_url", url)
        return self


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "REGULARS_EMBEDDED",
        "FEEDBACK_PUBLIC_URL",
        "PORT",
        "KAFKA_SESSION_TIMEOUT_MS",
        "DB_POOL_SIZE",
        "REGULARS_STAFF_TOKEN_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/regulars")


def test_defaults_and_the_service_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGULARS_EMBEDDED", "1")
    settings = load(ShopFacing)
    assert settings.port == 8003
    assert settings.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert settings.feedback_public_url == "http://127.0.0.1:8003"


def test_a_public_url_is_required_outside_embedded_mode() -> None:
    with pytest.raises(SystemExit) as stopped:
        load(ShopFacing)
    assert "FEEDBACK_PUBLIC_URL is not set" in str(stopped.value)


def test_a_public_url_given_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDBACK_PUBLIC_URL", "https://surveys.mainst.example/")
    assert load(ShopFacing).feedback_public_url == "https://surveys.mainst.example"


def test_a_missing_database_url_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("REGULARS_EMBEDDED", "1")
    with pytest.raises(SystemExit) as stopped:
        load(ShopFacing)
    assert "DATABASE_URL" in str(stopped.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("DB_POOL_SIZE", "lots"), ("KAFKA_SESSION_TIMEOUT_MS", "12x"), ("PORT", "70000")],
)
def test_a_malformed_value_is_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv("REGULARS_EMBEDDED", "1")
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        load(ShopFacing)
    assert name in str(stopped.value)


def test_the_staff_token_key_is_read_and_kept_out_of_sight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGULARS_EMBEDDED", "1")
    monkeypatch.setenv("REGULARS_STAFF_TOKEN_KEY", "s" * 40)
    settings = load(ShopFacing)
    assert settings.staff_key() == "s" * 40
    assert "s" * 40 not in repr(settings)


def test_embedded_mode_agrees_on_a_well_known_staff_token_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGULARS_EMBEDDED", "1")
    assert load(ShopFacing).staff_key() == staff.EMBEDDED_KEY


def test_outside_embedded_mode_no_staff_token_key_means_none_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEEDBACK_PUBLIC_URL", "https://surveys.mainst.example")
    assert load(ShopFacing).staff_key() is None


def test_a_short_staff_token_key_stops_the_service_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REGULARS_EMBEDDED", "1")
    monkeypatch.setenv("REGULARS_STAFF_TOKEN_KEY", "too-short")
    with pytest.raises(SystemExit) as stopped:
        load(ShopFacing)
    assert "REGULARS_STAFF_TOKEN_KEY:" in str(stopped.value)
    assert "too-short" not in str(stopped.value)
