"""A service with a missing or malformed setting stops at once, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def start(service: str, **env: str) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.endswith(("_URL", "_MS", "EMBEDDED"))}
    return subprocess.run(
        [sys.executable, "-m", f"regulars_{service}"],
        env={**keep, "DATABASE_URL": "postgresql://nowhere/regulars", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("service", "variable"),
    [("followup", "FOLLOWUP_PUBLIC_URL"), ("feedback", "FEEDBACK_PUBLIC_URL")],
)
def test_outside_embedded_mode_a_customer_facing_url_is_required(
    service: str, variable: str
) -> None:
    run = start(service)
    assert run.returncode != 0
    assert f"{variable} is not set" in run.stderr, run.stderr


def test_an_email_sender_is_required_with_smtp() -> None:
    run = start(
        "followup",
        FOLLOWUP_PUBLIC_URL="https://x.example",
        SMTP_URL="smtp://mx:25",
        REGULARS_SURVEY_LINK_KEY="k" * 40,
    )
    assert run.returncode != 0
    assert "MAIL_FROM" in run.stderr, run.stderr


@pytest.mark.parametrize(
    ("variable", "value"), [("KAFKA_SESSION_TIMEOUT_MS", "soon"), ("DB_POOL_SIZE", "0")]
)
def test_a_malformed_value_is_named(variable: str, value: str) -> None:
    run = start("loyalty", REGULARS_EMBEDDED="1", **{variable: value})
    assert run.returncode != 0
    assert variable in run.stderr, run.stderr
    assert "Traceback" not in run.stderr  # a message for a person, not a crash


def test_no_database_url_is_named() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    run = subprocess.run(
        [sys.executable, "-m", "regulars_intake"],
        env={**env, "REGULARS_EMBEDDED": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "DATABASE_URL" in run.stderr, run.stderr


CONSOLE = {
    "CONSOLE_PUBLIC_URL": "https://console.example",
    "INTAKE_URL": "http://intake:8001",
    "FOLLOWUP_URL": "http://followup:8002",
    "FEEDBACK_URL": "http://feedback:8003",
    "REGULARS_STAFF_TOKEN_KEY": "k" * 40,
}


@pytest.mark.parametrize("variable", sorted(CONSOLE))
def test_outside_embedded_mode_the_console_needs_each_of_its_settings(variable: str) -> None:
    env = {k: v for k, v in CONSOLE.items() if k != variable}
    run = start("loyalty", **env)
    assert run.returncode != 0
    assert f"{variable} is not set" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
