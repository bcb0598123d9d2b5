"""Summarise a pyinstrument session: heaviest functions and a per-request split.

Each sample is a stack (root first) and the time it stood for, in the order taken, so a
running sum places it in time: only samples inside the wrk window count. A sample is
charged to the innermost frame of the request path it passes through (asyncpg time under
``record_visit`` is "DB: visit row"), else to the library it is in.

How to read it: pyinstrument sees Python frames only. Work done in C with no Python frame
of its own (uvloop's I/O, httptools, asyncpg's protocol parser) is charged to whichever
Python frame runs next; after a database answer that is the outermost frame of the
resumed request coroutine, so framework frames collect part of the database cost. The
plain endpoint profiled the same way shows what the framework costs without that.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyinstrument.session import Session

TOP = 15
LOOP = "event loop (uvloop/C, charged to the loop)"
OTHER = "other"
WORKERS = "workers (outbox relay, Kafka producer)"
FRAMEWORK = "framework (uvicorn, starlette, fastapi)"

# (category, function name or "*", a fragment of the file path), for the request path.
APP_MARKERS: list[tuple[str, str, str]] = [
    ("auth (API key)", "shop_for", "regulars_runtime/auth.py"),
    ("rate limit (shared, PostgreSQL)", "check", "regulars_runtime/limit_store.py"),
    ("body read", "_read_body", "entrypoints/post_event.py"),
    ("posting check + pydantic validation", "parse_posting", "domain/postings.py"),
    ("body hash (sha256)", "body_hash", "domain/postings.py"),
    ("endpoint (ASGI, JSON parse, answer)", "*", "entrypoints/post_event.py"),
    ("group commit: queue and transaction", "*", "entrypoints/acceptance.py"),
    ("handler logic (accept_many)", "*", "regulars_intake/handlers.py"),
    ("handler logic (accept_many)", "*", "regulars_intake/domain/acceptance.py"),
    ("DB: idempotency records", "claim", "adapters/repository.py"),
    ("DB: idempotency records", "stored", "adapters/repository.py"),
    ("DB: visit rows", "add_completed", "adapters/repository.py"),
    ("DB: one-at-a-time path", "*", "adapters/repository.py"),
    ("envelope (emit: CloudEvent + value)", "emit", "regulars_runtime/unit_of_work.py"),
    ("outbox: row encoding", "rows", "regulars_bus/outbox.py"),
    # The rows and the NOTIFY that wakes the relay: one statement or two, one category.
    ("outbox: INSERT + NOTIFY", "write", "regulars_bus/outbox.py"),
    ("DB: pool acquire/release (+reset query)", "*", "asyncpg/pool.py"),
    ("DB: BEGIN/COMMIT", "*", "asyncpg/transaction.py"),
    ("endpoint (plain)", "post_event", "plain_app.py"),
]
LIBRARY_MARKERS: list[tuple[str, str, str]] = [
    ("metrics middleware", "*", "prometheus_client/"),
    ("metrics middleware", "__call__", "regulars_runtime/service.py"),
    ("pydantic (framework-driven)", "*", "pydantic"),
    (FRAMEWORK, "*", "uvicorn/"),
    (FRAMEWORK, "*", "starlette/"),
    (FRAMEWORK, "*", "fastapi/"),
]
WORKER_PATHS = ("regulars_bus/relay.py", "aiokafka/", "regulars_bus/kafka.py")


@dataclass(frozen=True)
class FrameId:
    function: str
    path: str
    line: str

    @classmethod
    def parse(cls, info: str) -> FrameId:
        identifier = info.split("\x01", 1)[0]
        function, path, line = [*identifier.split("\x00"), "", ""][:3]
        return cls(function, path, line)

    def short(self) -> str:
        path = self.path
        for anchor in ("site-packages/", "/main/", "/libs/", "/services/"):
            if anchor in path:
                path = path.split(anchor, 1)[1]
                break
        return f"{self.function} ({path}:{self.line})"

    def matches(self, function: str, fragment: str) -> bool:
        # Other samplers name methods Class.method; the markers name the method.
        name = self.function.rsplit(".", 1)[-1]
        return function in ("*", name) and fragment in self.path


def _innermost(stack: Sequence[FrameId], markers: list[tuple[str, str, str]]) -> str | None:
    for i in range(len(stack) - 1, -1, -1):
        for category, function, fragment in markers:
            if stack[i].matches(function, fragment):
                return category
    return None


def categorise(stack: Sequence[FrameId]) -> str:
    if any(fragment in f.path for f in stack for fragment in WORKER_PATHS):
        return WORKERS
    found = _innermost(stack, APP_MARKERS)
    if found:
        return found
    if stack[-1].matches("run", "asyncio/runners.py"):
        return LOOP
    return _innermost(stack, LIBRARY_MARKERS) or OTHER


def _records_in(session: Session, start: float, end: float) -> list[tuple[list[str], float]]:
    """The samples taken between two wall-clock times (time.time())."""
    kept = []
    at = session.start_time
    for infos, seconds in session.frame_records:
        at += seconds
        if start <= at <= end:
            kept.append((infos, seconds))
    return kept


def summarise(session_path: Path, requests: int, window: tuple[float, float]) -> dict[str, Any]:
    """Top functions by self and total time, and µs per request per category."""
    session = Session.load(session_path)
    self_time: dict[str, float] = defaultdict(float)
    total_time: dict[str, float] = defaultdict(float)
    categories: dict[str, float] = defaultdict(float)
    for infos, seconds in _records_in(session, *window):
        stack = [FrameId.parse(i) for i in infos]
        if not stack:
            continue
        self_time[stack[-1].short()] += seconds
        for name in {f.short() for f in stack}:
            total_time[name] += seconds
        categories[categorise(stack)] += seconds
    sampled = sum(categories.values())
    per = max(requests, 1)
    return {
        "requests": requests,
        "window_s": window[1] - window[0],
        "sampled_s": sampled,
        "us_per_request": sampled / per * 1e6,
        "categories": {
            k: {"us_per_request": v / per * 1e6, "share": v / sampled if sampled else 0.0}
            for k, v in sorted(categories.items(), key=lambda kv: -kv[1])
        },
        "top_self": [
            {"function": k, "self_s": v, "total_s": total_time[k]}
            for k, v in sorted(self_time.items(), key=lambda kv: -kv[1])[:TOP]
        ],
        "top_total": [
            {"function": k, "total_s": v, "self_s": self_time.get(k, 0.0)}
            for k, v in sorted(total_time.items(), key=lambda kv: -kv[1])[:TOP]
        ],
    }


def print_summary(intake: dict[str, Any], plain: dict[str, Any]) -> None:
    print(
        f"intake.profile requests={intake['requests']} window_s={intake['window_s']:.1f}"
        f" us_per_request={intake['us_per_request']:.0f}"
        f" (plain under the same profiler: {plain['us_per_request']:.0f};"
        " full reports: bench/results/{intake,plain}-profile.html)"
    )
    print("intake.profile where a request's time goes (µs per request, share; plain beside):")
    plain_cats = plain["categories"]
    for name, c in intake["categories"].items():
        beside = plain_cats.get(name, {}).get("us_per_request")
        extra = f"  (plain {beside:.0f})" if beside is not None else ""
        print(f"  {c['us_per_request']:7.0f} µs {c['share'] * 100:5.1f}%  {name}{extra}")
    for name, c in plain_cats.items():
        if name not in intake["categories"]:
            print(f"        - µs     -   {name}  (plain {c['us_per_request']:.0f})")
    print(f"intake.profile top {TOP} functions by self time (self s / total s):")
    for row in intake["top_self"]:
        print(f"  {row['self_s']:7.3f} / {row['total_s']:7.3f}  {row['function']}")
