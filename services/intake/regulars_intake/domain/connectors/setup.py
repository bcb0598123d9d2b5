"""A shop's connector as configured with ``PUT /v1/connectors/{system}``. Pure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .common import Choices


class ConnectorSetup(BaseModel):
    """The body of ``PUT /v1/connectors/{system}``."""

    model_config = ConfigDict(extra="forbid")

    secret: str = Field(
        min_length=8,
        max_length=500,
        description="the system's signing secret (Shopmonkey whsec_..., Housecall Pro,"
        " Jobber client secret, ServiceTitan HMAC key) or the token in the hook URL (Tekmetric)",
    )
    access_token: str | None = Field(
        None, max_length=4000, description="Jobber: the OAuth access token its API is read with"
    )
    timezone: str | None = Field(
        None,
        max_length=200,
        description="times without an offset are read here; default the shop's timezone",
    )
    completed_statuses: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list,
        max_length=50,
        description="the system's statuses that mean the visit is done (default per system)",
    )
    voided_statuses: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=50
    )
    money: Literal["cents", "dollars"] | None = Field(
        None, description="how the system writes money where it differs (default per system)"
    )
    completed_on: Literal["completed", "invoiced"] | None = Field(
        None, description="Shopmonkey: count the visit when the order is completed or invoiced"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
            # OSError: a name too long for a file name (the zone database is files)
            raise ValueError(f"{value[:60]!r} is not an IANA timezone name") from None
        return value

    def choices(self) -> dict[str, Any]:
        """What is kept in the clear (everything but the secret and the token)."""
        return self.model_dump(exclude={"secret", "access_token"}, exclude_none=True)


#: money as each system writes it in its webhooks, unless the shop says otherwise
DEFAULT_MONEY: dict[str, Literal["cents", "dollars"]] = {
    "shopmonkey": "cents",
    "tekmetric": "cents",
    "housecall_pro": "cents",
    "jobber": "dollars",
    "servicetitan": "dollars",
}


@dataclass(frozen=True)
class Connector:
    id: uuid.UUID
    shop_id: uuid.UUID
    system: str
    choices: dict[str, Any] = field(default_factory=dict)

    def reading(self, shop_timezone: str) -> Choices:
        """How this connector reads its system's payloads."""
        c = self.choices
        return Choices(
            timezone=c.get("timezone") or shop_timezone,
            completed_statuses=frozenset(c.get("completed_statuses") or ()),
            voided_statuses=frozenset(c.get("voided_statuses") or ()),
            money=c.get("money") or DEFAULT_MONEY.get(self.system, "cents"),
            extra={k: v for k, v in c.items() if k == "completed_on"},
        )


@dataclass(frozen=True)
class Tally:
    """What one delivery came to, for the connector's counts."""

    accepted: int = 0
    rejected: int = 0
    errors: int = 0
