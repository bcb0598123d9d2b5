"""What intake's entrypoints hold besides the bus: group commit and the shops' rates
(checked in PostgreSQL, so every replica draws on one allowance per shop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from regulars_runtime.limits import Rate
from regulars_runtime.service import ServiceContext, context

from ..adapters.secret_box import SecretBox
from .acceptance import AcceptanceQueue


@dataclass(frozen=True)
class Front:
    acceptance: AcceptanceQueue
    #: events per shop
    events: Rate
    #: key management, apart from events: a flood of posts never blocks a rotation
    key_requests: Rate
    #: per connector: a flood from one shop system waits, the others go on
    hook_deliveries: Rate
    secrets: SecretBox | None


def front_of(ctx: ServiceContext[Any]) -> Front:
    found = ctx.front
    assert isinstance(found, Front), "intake's bootstrap wires a Front"
    return found


def front(request: Request) -> Front:
    return front_of(context(request))
