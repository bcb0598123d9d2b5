"""What the console's pages hold beyond the bus: the owning services' APIs, the sign-in
mail and the console's public address. Built in bootstrap, kept on the service context."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from regulars_runtime.service import context

from ...adapters.shop_services import ShopServices
from ...adapters.sign_in_mail import SignInMail


@dataclass
class ConsoleParts:
    services: ShopServices
    mail: SignInMail
    #: where staff open the console (the links in sign-in emails)
    public_url: str
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    def send_later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


def parts_of(request: Request) -> ConsoleParts:
    front = context(request).front
    assert isinstance(front, ConsoleParts), "loyalty's bootstrap wires the console"
    return front
