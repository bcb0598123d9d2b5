"""What intake's entrypoints hold besides the bus: group commit and the shops' rates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from regulars_runtime.service import ServiceContext, context

from ..adapters.secret_box import SecretBox
from ..domain.rate_limit import ShopRateLimits
from .acceptance import AcceptanceQueue


@dataclass(frozen=True)
class Front:
    acceptance: AcceptanceQueue
    rate_limits: ShopRateLimits
    #: key management, apart from events: a flood of posts never blocks a rotation
    key_limits: ShopRateLimits
    #: per connector: a flood from one shop system waits, the others go on
    hook_limits: ShopRateLimits
    secrets: SecretBox | None


def front_of(ctx: ServiceContext[Any]) -> Front:
    found = ctx.front
    assert isinstance(found, Front), "intake's bootstrap wires a Front"
    return found


def front(request: Request) -> Front:
    return front_of(context(request))
