"""Messages per second through a real SMTP server (aiosmtpd), via followup's SmtpSender.

The baseline, in the same process against the same server: aiosmtplib's own ``send`` of
an equivalent message, with the same concurrency. The ratio shows what our adapter
(message building, headers, error mapping) costs over the bare client.

    .venv/bin/python bench/smtp_bench.py
"""

from __future__ import annotations

import asyncio
import socket
import time
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from aiosmtpd.controller import Controller
from regulars_followup.adapters.email import SmtpSender
from regulars_followup.domain.templates import render

N = 2000
CONCURRENCY = 8


class _Count:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _drive(send: Any, n: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await send(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return n / (time.perf_counter() - started)


async def measure(n: int = N) -> dict[str, float]:
    counter = _Count()
    port = _free_port()
    controller = Controller(counter, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sender = SmtpSender(f"smtp://127.0.0.1:{port}", "Quick Lube <shop@example.com>")
        context = {
            "customer_name": "Dana Whitfield",
            "shop_name": "Quick Lube",
            "link": "https://example.com/s/token",
            "unsubscribe_url": "https://example.com/u/x",
            "shop_address": "1 Main St",
        }
        rendered = render("survey", "email", context)

        async def ours(i: int) -> None:
            await sender.send(
                to=f"c{i}@example.com",
                subject=rendered.subject or "",
                text=rendered.text,
                html=rendered.html,
                message_id=f"bench-{i}",
                headers={"List-Unsubscribe-URL": "https://example.com/u/x"},
            )

        async def bare(i: int) -> None:
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "shop@example.com", f"c{i}@example.com", "x"
            msg.set_content(rendered.text)
            msg.add_alternative(rendered.html or "", subtype="html")
            await aiosmtplib.send(msg, hostname="127.0.0.1", port=port)

        baseline = await _drive(bare, n)
        adapter = await _drive(ours, n)
        assert counter.received == 2 * n, counter.received
        return {
            "msgs_per_s": adapter,
            "baseline_msgs_per_s": baseline,
            "ratio": adapter / baseline,
            "n": n,
        }
    finally:
        controller.stop()


def main() -> None:
    r = asyncio.run(measure())
    print(
        f"messages.smtp_per_s value={r['msgs_per_s']:.0f} baseline={r['baseline_msgs_per_s']:.0f}"
        f" ratio={r['ratio']:.2f} n={r['n']}"
    )


if __name__ == "__main__":
    main()
