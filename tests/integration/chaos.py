"""The fault suite (`make chaos`): nothing lost and nothing twice, with faults.

Two replicas of every service (separate processes) run on one PostgreSQL and one broker.
A steady seeded load plays shops' systems and staff: customers and visits posted to
intake (retried, same event id, until answered, as a shop system does), call attempts on
the follow-up tasks, survey answers, and webhook deliveries to a local receiver; SLA
timers of seconds make recovery cases escalate while it runs. Meanwhile, in a seeded
order at seeded moments, each service replica is killed (-9), then each service's relay
(the replica whose relay holds the advisory lock, from /metrics), then the broker (which
comes back empty, on a new cluster id) and PostgreSQL, and each is started again after a
seeded pause. Then the load stops, everything settles, and the suite counts from the
databases and from the receivers (SMTP sink, SMS stand-in, webhook receiver), against
what was answered as accepted:

- accepted: events intake acknowledged, attempts recorded, survey answers taken;
- lost: an accepted event or decision with no effect where it must have one (a visit
  without its follow-up task, a customer, an answer or a call missing downstream, a sent
  message no receiver got, a subscribed event never delivered) -- must be 0;
- duplicate effects: a second follow-up task, recovery case, message to a customer (the
  same email or text received twice), stage change or escalation -- must be 0;
- timers fired more than once (a task missed twice, an SLA warning or escalation
  decided twice, a timer row fired twice) -- must be 0.

``python tests/integration/chaos.py --seed 7 --duration 600`` (what `make chaos SEED=7
DURATION=600` runs) exits 1 when any count is not 0; tests/integration/test_chaos.py runs
the short form in `make test`. Printed per item, so a failure names what to look at; the
seed replays the same load and the same faults in the same order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).parent))

from harness import (
    SERVICES,
    Broker,
    MailSink,
    ServiceProcess,
    SmsSink,
    System,
    auth,
    free_port,
    workdir,
)

REPLICAS = 2
#: how long a (re)started replica may take to be ready: Python's imports alone took three
#: minutes on a 2-core machine shared with seven other test runs
READY_WITHIN = 600.0
ALL_DAY = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
STAFF = [
    {"id": "sam", "name": "Sam Rivera", "role": "advisor", "email": "sam@chaos.example"},
    {
        "id": "maria",
        "name": "Maria Lopez",
        "role": "service_manager",
        "email": "maria@chaos.example",
    },
    {"id": "olga", "name": "Olga Chen", "role": "owner", "email": "olga@chaos.example"},
]
#: SLA windows of seconds and a follow-up due at once: timers fire while faults happen
POLICY = {
    "business_hours": ALL_DAY,
    "follow_up_delay": "PT0S",
    # long enough that a visit reaches followup within its window whatever the faults
    # (one that does not is a historical visit by the policy: no call, and said so below)
    "follow_up_missed_after": "PT10M",
    "ack_sla_critical": "PT4S",
    "ack_sla": "PT8S",
    "resolve_sla": "PT90S",
    "staff": STAFF,
    "contact": {
        "name": "Chaos Motors",
        "phone": "+15125550123",
        "postal_address": "1 Main St, Springfield",
        "review_url": "https://g.page/r/chaos-motors/review",
    },
}
SERVICE_ENV = {
    # the webhook receiver is on this machine
    "REGULARS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32",
    "REGULARS_WEBHOOK_RETRY_SCHEDULE": "PT1S,PT2S,PT2S,PT4S,PT4S,PT8S,PT8S,PT8S",
    "DB_POOL_SIZE": "4",
}
SUBSCRIBED = ("regulars.customer.upserted.v1", "regulars.service.completed.v1")
#: zones whose local time suits texts now (quiet hours are the customer's)
DAYTIME_ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Pacific/Auckland",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Europe/Berlin",
    "Europe/London",
)


def log(text: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {text}", flush=True)


# -- the webhook receiver ---------------------------------------------------------------


@dataclass
class Delivery:
    path: str
    webhook_id: str
    event: dict[str, Any]


class WebhookReceiver:
    """An integrator's endpoint on this machine: answers 200 and keeps every delivery."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[Delivery] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with contextlib.suppress(ValueError), receiver.lock:
                    receiver.got.append(
                        Delivery(self.path, self.headers.get("webhook-id", ""), json.loads(body))
                    )
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256
            daemon_threads = True

        self.server = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def deliveries(self) -> list[Delivery]:
        with self.lock:
            return list(self.got)

    def stop(self) -> None:
        self.server.shutdown()


# -- the system under faults ------------------------------------------------------------


class Cluster:
    """PostgreSQL, the broker, the receivers and two replicas of every service."""

    def __init__(self, wd: Path) -> None:
        self.wd = wd
        self.pg: Any = None
        self.system: System | None = None
        self.replicas: dict[str, list[ServiceProcess]] = {}
        self.webhooks = WebhookReceiver()

    @property
    def sys(self) -> System:
        assert self.system is not None
        return self.system

    async def start(self) -> None:
        from regulars_cli.launcher import EmbeddedPostgres
        from regulars_cli.schemas import migrate

        runtime = self.wd / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
        self.pg = EmbeddedPostgres(self.wd / "pg")
        database_url = await asyncio.to_thread(self.pg.start)
        await migrate(database_url)
        broker = Broker(self.wd)
        await asyncio.to_thread(broker.start)
        self.system = System(
            database_url, broker, broker.bootstrap, self.wd, MailSink(), SmsSink(self.wd)
        )
        for name in SERVICES:
            self.replicas[name] = []
            for i in range(REPLICAS):
                svc = ServiceProcess(
                    name,
                    free_port(),
                    self.sys.env(**SERVICE_ENV),
                    self.wd / f"{name}-{i}.log",
                )
                self.replicas[name].append(svc)
                if i == 0:
                    # the console (loyalty) is told where the first of each is
                    self.sys.services[name] = svc
            for svc in self.replicas[name]:
                svc.env = self.sys.env(**SERVICE_ENV)
                svc.start()
        for group in self.replicas.values():
            for svc in group:
                await asyncio.to_thread(svc.wait_healthy, READY_WITHIN)

    def urls(self, name: str) -> list[str]:
        return [s.url for s in self.replicas[name]]

    # faults

    async def kill_replica(self, name: str, index: int, down: float) -> None:
        svc = self.replicas[name][index]
        svc.kill(signal.SIGKILL)
        await asyncio.sleep(down)
        await self.restart(svc)

    async def restart(self, svc: ServiceProcess) -> None:
        """Start it until it is ready, as an orchestrator does: a replica started while
        PostgreSQL is away exits (its pool cannot open) and is started again."""
        deadline = time.monotonic() + READY_WITHIN
        while True:
            svc.start()
            try:
                await asyncio.to_thread(svc.wait_healthy, READY_WITHIN)
                return
            except RuntimeError:
                if svc.proc is None or svc.proc.poll() is None or time.monotonic() > deadline:
                    raise
                log(f"{svc.name} on port {svc.port} exited while starting; starting it again")
                await asyncio.sleep(2)

    async def relay_leader(self, name: str) -> int | None:
        async with httpx.AsyncClient(timeout=3) as http:
            for index, svc in enumerate(self.replicas[name]):
                with contextlib.suppress(httpx.HTTPError):
                    text = (await http.get(f"{svc.url}/metrics")).text
                    if f'regulars_relay_leader{{service="{name}"}} 1.0' in text:
                        return index
        return None

    async def kill_broker(self, down: float) -> None:
        broker = self.sys.broker
        assert broker is not None
        broker.kill()
        await asyncio.sleep(down)
        await asyncio.to_thread(broker.start)

    async def kill_postgres(self, down: float) -> None:
        pid = int((self.pg.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(down)
        deadline = time.monotonic() + 120
        while True:
            try:
                url = await asyncio.to_thread(self.pg.restart)
                break
            except Exception as exc:  # its backends still hold the shared memory: again
                if time.monotonic() > deadline:
                    raise
                log(f"postgres not up yet ({type(exc).__name__}); again")
                await asyncio.sleep(1)
        assert url == self.sys.database_url, "PostgreSQL came back at another address"

    async def healthy(self) -> None:
        for group in self.replicas.values():
            for svc in group:
                await asyncio.to_thread(svc.wait_healthy, READY_WITHIN)

    def stop(self) -> None:
        if self.system is not None:
            for group in self.replicas.values():
                for svc in group:
                    with contextlib.suppress(Exception):
                        svc.kill(signal.SIGTERM)
            with contextlib.suppress(Exception):
                if self.sys.mail:
                    self.sys.mail.stop()
            with contextlib.suppress(Exception):
                if self.sys.sms:
                    self.sys.sms.stop()
            if self.sys.broker:
                self.sys.broker.kill()
        self.webhooks.stop()
        if self.pg is not None:
            self.pg.stop()


# -- the load ---------------------------------------------------------------------------


@dataclass
class Accepted:
    """What the system answered as taken, the ground truth the counts compare with."""

    #: the shop's event id -> (type, data) for every event intake acknowledged
    events: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    #: task id -> attempts recorded (201), and the outcome of the last
    attempts: dict[str, list[str]] = field(default_factory=dict)
    #: task id -> attempts sent whose answer is not known yet (a story stopped mid-call)
    pending: Counter[str] = field(default_factory=Counter)
    #: survey id -> nps answered (201 or the same answer again, 200)
    answers: dict[str, int] = field(default_factory=dict)
    #: calls answered by a fault (connection lost, 5xx) and tried again
    retried: int = 0


class Load:
    """A shop's system and its staff, seeded: customers, visits, calls, survey answers."""

    def __init__(self, cluster: Cluster, shop_id: str, key: str, seed: int) -> None:
        self.cluster = cluster
        self.shop_id = shop_id
        self.key = key
        self.seed = seed
        self.rng = random.Random(seed)
        self.accepted = Accepted()
        self.stories = 0
        self.http = httpx.AsyncClient(timeout=10, headers=auth(key))
        self.anonymous = httpx.AsyncClient(timeout=10)
        self.errors: list[str] = []

    async def close(self) -> None:
        await self.http.aclose()
        await self.anonymous.aclose()

    async def _call(
        self,
        service: str,
        method: str,
        path: str,
        rng: random.Random,
        *,
        client: httpx.AsyncClient | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """One request to any live replica; None when a fault answered (connection, 5xx)."""
        url = rng.choice(self.cluster.urls(service))
        try:
            r = await (client or self.http).request(method, url + path, **kwargs)
        except httpx.HTTPError:
            return None
        if r.status_code >= 500 or r.status_code == 429:
            return None
        return r

    async def post_event(self, event: dict[str, Any], rng: random.Random) -> None:
        """As a shop system does: the same event, same id, until intake acknowledges it."""
        for attempt in range(100_000):
            r = await self._call("intake", "POST", "/v1/events", rng, json=event)
            if r is not None and r.status_code == 202:
                status = r.json()["status"]
                assert status in ("accepted", "duplicate"), r.text
                self.accepted.events[event["id"]] = (event["type"], event["data"])
                return
            if r is not None:
                raise AssertionError(f"intake refused {event['id']}: {r.status_code} {r.text}")
            if attempt == 0:
                self.accepted.retried += 1
            await asyncio.sleep(0.2 + rng.random() * 0.3)

    async def _get_items(
        self, service: str, path: str, params: dict[str, str], rng: random.Random
    ) -> list[dict[str, Any]] | None:
        r = await self._call(service, "GET", path, rng, params=params)
        if r is None or r.status_code != 200:
            return None  # a fault, or a replica that has not seen the shop's key yet
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    async def _wait_items(
        self,
        service: str,
        path: str,
        params: dict[str, str],
        rng: random.Random,
        wanted: Callable[[dict[str, Any]], bool],
        timeout: float,
    ) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = await self._get_items(service, path, params, rng)
            for item in items or []:
                if wanted(item):
                    return item
            await asyncio.sleep(0.8 + rng.random() * 0.4)
        return None

    async def task(self, cid: str, ro: str, rng: random.Random) -> dict[str, Any] | None:
        return await self._wait_items(
            "followup",
            "/v1/followups",
            {"customer_id": cid},
            rng,
            lambda t: t["repair_order_id"] == ro,
            90,
        )

    async def attempt(
        self, task_id: str, cid: str, body: dict[str, Any], rng: random.Random
    ) -> str:
        """One call attempt, recorded at most once: a fault's answer is checked against
        the task's attempts before the attempt is made again. 'recorded', or 'finished'
        (the task was completed or missed already)."""
        # left counted as pending if the story is stopped mid-call: it may have committed
        self.accepted.pending[task_id] += 1
        outcome = await self._attempt(task_id, cid, body, rng)
        self.accepted.pending[task_id] -= 1
        return outcome

    async def _attempt(
        self, task_id: str, cid: str, body: dict[str, Any], rng: random.Random
    ) -> str:
        recorded = self.accepted.attempts.setdefault(task_id, [])
        number = len(recorded) + 1
        while True:
            r = await self._call(
                "followup", "POST", f"/v1/followups/{task_id}/attempts", rng, json=body
            )
            if r is not None and r.status_code == 201:
                recorded.append(body["outcome"])
                return "recorded"
            if r is not None and r.status_code == 409:
                return "finished"
            if r is not None and r.status_code != 404:
                raise AssertionError(f"attempt on {task_id}: {r.status_code} {r.text}")
            self.accepted.retried += 1
            # did it commit before the fault answered?
            while True:
                items = await self._get_items(
                    "followup", "/v1/followups", {"customer_id": cid}, rng
                )
                mine = [t for t in items or [] if t["id"] == task_id]
                if mine:
                    break
                await asyncio.sleep(0.5)
            if mine[0]["attempts"] >= number:
                recorded.append(body["outcome"])
                return "recorded"
            if mine[0]["status"] != "scheduled":
                return "finished"
            await asyncio.sleep(0.3 + rng.random() * 0.3)

    async def answer_survey(self, cid: str, rng: random.Random) -> None:
        survey = await self._wait_items(
            "feedback",
            "/v1/surveys",
            {"customer_id": cid},
            rng,
            lambda s: s.get("status") == "sent" and bool(s.get("token")),
            90,
        )
        if survey is None:
            return  # the count of lost surveys is not the load's to make; see counts
        nps = rng.choice([0, 2, 5, 7, 8, 9, 10, 10])
        while True:
            r = await self._call(
                "feedback",
                "POST",
                f"/v1/surveys/{survey['token']}/responses",
                rng,
                client=self.anonymous,
                json={"nps": nps, "comment": "thanks" if nps > 6 else "took too long"},
            )
            if r is not None and r.status_code in (200, 201):
                self.accepted.answers[survey["id"]] = nps
                return
            if r is not None and r.status_code not in (404,):
                raise AssertionError(f"survey answer: {r.status_code} {r.text}")
            self.accepted.retried += 1
            await asyncio.sleep(0.3 + rng.random() * 0.3)

    async def story(self, n: int) -> None:
        """One customer's visit, seeded by its number: what staff and the customer do."""
        rng = random.Random(self.seed * 1_000_003 + n)
        cid = f"c-{n}"
        now = datetime.now(UTC).isoformat()
        data: dict[str, Any] = {
            "customer_id": cid,
            "name": f"Customer {n}",
            "email": f"{cid}@customers.example",
            "consent": {"email": True},
        }
        if rng.random() < 0.4:
            data["phone"] = f"+1512555{2000 + n % 8000:04d}"
            data["consent"] = {"email": True, "sms": True}
            data["timezone"] = _daytime_zone()
        await self.post_event(
            {"type": "customer.upserted", "id": f"up-{cid}", "occurred_at": now, "data": data},
            rng,
        )
        ro = f"ro-{n}"
        await self.post_event(
            {
                "type": "service.completed",
                "id": f"done-{ro}",
                "occurred_at": now,
                "data": {
                    "repair_order_id": ro,
                    "customer_id": cid,
                    "completed_at": now,
                    "advisor": "sam",
                    "work_performed": "front brake pads",
                },
            },
            rng,
        )
        plot = rng.random()
        if plot < 0.15:
            return  # nobody calls: the missed-follow-up timer decides, then a survey
        task = await self.task(cid, ro, rng)
        if task is None:
            return  # counted as lost below, if it never comes
        if plot < 0.55:
            if await self.attempt(task["id"], cid, _reached(True), rng) == "recorded":
                await self.answer_survey(cid, rng)
        elif plot < 0.75:
            await self.attempt(task["id"], cid, _reached(False, "brakes feel unsafe"), rng)
        else:
            for _ in range(3):
                if await self.attempt(task["id"], cid, {"outcome": "no_answer"}, rng) != "recorded":
                    break
            await self.answer_survey(cid, rng)

    async def run(self, stop: asyncio.Event, rate: float, at_once: int) -> None:
        """Start stories at ``rate`` per second (at most ``at_once`` in flight) until stop."""
        running: set[asyncio.Task[None]] = set()
        gate = asyncio.Semaphore(at_once)

        async def one(n: int) -> None:
            try:
                await self.story(n)
            except Exception as exc:
                self.errors.append(f"story {n}: {exc!r}")
            finally:
                gate.release()

        while not stop.is_set():
            await gate.acquire()
            self.stories += 1
            t = asyncio.create_task(one(self.stories))
            running.add(t)
            t.add_done_callback(running.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.expovariate(rate))
        if running:
            await asyncio.wait(running, timeout=240)
        for t in running:
            t.cancel()


def _reached(satisfied: bool, notes: str = "all fine") -> dict[str, Any]:
    return {"outcome": "reached", "satisfied": satisfied, "notes": notes, "by": "sam"}


def _daytime_zone() -> str:
    from zoneinfo import ZoneInfo

    for zone in DAYTIME_ZONES:
        hour = datetime.now(ZoneInfo(zone)).hour
        if 10 <= hour < 19:
            return zone
    return DAYTIME_ZONES[0]


# -- the faults -------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str  # replica | relay | broker | postgres
    service: str = ""
    index: int = 0

    def __str__(self) -> str:
        if self.kind == "replica":
            return f"kill -9 {self.service} replica {self.index}"
        if self.kind == "relay":
            return f"kill -9 {self.service}'s relay (its leader replica)"
        return f"kill -9 the {self.kind}"


def faults_in_turn(rng: random.Random) -> list[Fault]:
    every = [Fault("replica", name, i) for name in SERVICES for i in range(REPLICAS)]
    every += [Fault("relay", name) for name in SERVICES]
    every += [Fault("broker"), Fault("postgres")]
    rng.shuffle(every)
    return every


async def inflict(
    cluster: Cluster, rng: random.Random, duration: float, gap: tuple[float, float]
) -> list[str]:
    """Every fault in turn, at seeded moments, again until ``duration`` is used up.

    A killed replica is started again at once, and the next fault does not wait for it
    to be ready (a Python process takes long to start on a busy machine) unless it falls
    on that same service: then it waits, so that a replica is never killed while starting
    and the relay's leader is one of two running replicas."""
    done: list[str] = []
    recovering: dict[str, asyncio.Task[None]] = {}
    started = time.monotonic()

    async def settled(service: str) -> None:
        pending = recovering.pop(service, None)
        if pending is not None:
            await pending

    async def replica(service: str, index: int, down: float, what: str) -> None:
        t0 = time.monotonic()
        await cluster.kill_replica(service, index, down)
        log(f"{what}: ready again after {time.monotonic() - t0:.0f} s")

    while not done or time.monotonic() - started < duration:
        for fault in faults_in_turn(rng):
            await asyncio.sleep(rng.uniform(*gap))
            down = rng.uniform(0.3, 3.0)
            what = str(fault)
            if fault.kind in ("replica", "relay"):
                await settled(fault.service)
            if fault.kind == "relay":
                leader = await cluster.relay_leader(fault.service)
                for _ in range(20):
                    if leader is not None:
                        break
                    # the lock changes hands within a few seconds of a restart
                    await asyncio.sleep(1)
                    leader = await cluster.relay_leader(fault.service)
                if leader is None:
                    what += ": no leader found"
                else:
                    what += f" (replica {leader})"
                    fault = Fault("replica", fault.service, leader)
            if fault.kind == "replica":
                recovering[fault.service] = asyncio.create_task(
                    replica(fault.service, fault.index, down, what)
                )
            elif fault.kind == "broker":
                await cluster.kill_broker(down)
            elif fault.kind == "postgres":
                await cluster.kill_postgres(down)
            log(f"{what}; started again {down:.1f} s later")
            done.append(what)
    for pending in recovering.values():
        await pending
    return done


# -- the counts -------------------------------------------------------------------------


@dataclass
class Counts:
    accepted: Counter[str] = field(default_factory=Counter)
    lost: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    duplicates: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    timers_twice: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return (
            not any(self.lost.values())
            and not any(self.duplicates.values())
            and not any(self.timers_twice.values())
        )

    def total(self, kind: dict[str, list[str]]) -> int:
        return sum(len(v) for v in kind.values())

    def render(self) -> str:
        lines = ["", "== chaos: counts =="]
        lines.append(
            f"accepted events        {sum(self.accepted.values())}  ("
            + ", ".join(f"{k} {v}" for k, v in sorted(self.accepted.items()))
            + ")"
        )
        for title, kind in (
            ("lost", self.lost),
            ("duplicate effects", self.duplicates),
            ("timers fired twice", self.timers_twice),
        ):
            lines.append(f"{title:<22} {self.total(kind)}")
            for what, items in sorted(kind.items()):
                if items:
                    lines.append(f"    {what}: {len(items)}  e.g. {', '.join(items[:5])}")
        lines.extend(f"note: {n}" for n in self.notes)
        lines.append("RESULT: " + ("all zeros" if self.clean else "NOT ZERO"))
        return "\n".join(lines)


async def count(cluster: Cluster, load: Load, shop_id: str) -> Counts:
    counts = Counts()
    shop = uuid.UUID(shop_id)
    acc = load.accepted
    conn = await asyncpg.connect(cluster.sys.database_url)
    try:
        return await _count(conn, cluster, acc, shop, shop_id, counts)
    finally:
        await conn.close()


async def _count(
    conn: asyncpg.Connection,
    cluster: Cluster,
    acc: Accepted,
    shop: uuid.UUID,
    shop_id: str,
    counts: Counts,
) -> Counts:
    async def column(sql: str, *args: Any) -> set[Any]:
        return {r[0] for r in await conn.fetch(sql, *args)}

    async def events(schema: str, ce_type: str) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            f"SELECT convert_from(value, 'UTF8') AS v FROM {schema}.outbox"
            " WHERE headers @> $1::jsonb ORDER BY id",
            json.dumps([["shop_id", shop_id], ["ce_type", ce_type]]),
        )
        return [json.loads(r["v"]) for r in rows]

    def twice(values: Iterator[Any] | list[Any]) -> list[str]:
        return [str(k) for k, n in Counter(values).items() if n > 1]

    customers = {d["customer_id"] for t, d in acc.events.values() if t == "customer.upserted"}
    visits = {d["repair_order_id"]: d for t, d in acc.events.values() if t == "service.completed"}
    for kind in ("customer.upserted", "service.completed"):
        counts.accepted[kind] = sum(1 for t, _ in acc.events.values() if t == kind)
    counts.accepted["call attempts"] = sum(len(v) for v in acc.attempts.values())
    counts.accepted["survey answers"] = len(acc.answers)

    # -- lost: every accepted event has its effect in every service that consumes it
    for schema, table in (("followup", "customers"), ("loyalty", "customers")):
        have = await column(f"SELECT customer_id FROM {schema}.{table} WHERE shop_id = $1", shop)
        counts.lost[f"customer missing in {schema}"] = sorted(customers - have)
    tasks = await conn.fetch(
        "SELECT id, repair_order_id, customer_id, status FROM followup.follow_up_tasks"
        " WHERE shop_id = $1 AND kind = 'visit'",
        shop,
    )
    have = {r["repair_order_id"] for r in tasks}
    late = {
        r["repair_order_id"]
        for r in await conn.fetch(
            # the inbox keeps its transaction's start; the handler decided a little later
            "SELECT v.repair_order_id FROM followup.visits v"
            " JOIN followup.inbox i ON i.event_id = v.first_event_id WHERE v.shop_id = $1"
            " AND i.processed_at > v.completed_at + $2::interval - interval '1 minute'",
            shop,
            _window(),
        )
    }
    counts.lost["visit without its follow-up task"] = sorted(set(visits) - have - late)
    if late - have:
        counts.notes.append(
            f"{len(late - have)} visits reached followup after their whole follow-up window"
            " (no call, as for a historical visit): the machine is too slow for the policy"
        )
    for schema in ("feedback", "loyalty"):
        have = await column(f"SELECT repair_order_id FROM {schema}.visits WHERE shop_id = $1", shop)
        counts.lost[f"visit missing in {schema}"] = sorted(set(visits) - have)
    recorded = await conn.fetch(
        "SELECT task_id::text AS task_id, count(*) AS n FROM followup.follow_up_attempts"
        " WHERE shop_id = $1 GROUP BY 1",
        shop,
    )
    in_db = {r["task_id"]: r["n"] for r in recorded}
    counts.lost["call attempt not recorded"] = [
        t for t, made in acc.attempts.items() if in_db.get(t, 0) < len(made)
    ]
    counts.duplicates["call attempt recorded twice"] = [
        t for t, made in acc.attempts.items() if in_db.get(t, 0) > len(made) + acc.pending[t]
    ]
    finished = await column("SELECT task_id FROM loyalty.follow_ups WHERE shop_id = $1", shop)
    by_id = {str(r["id"]): r for r in tasks}
    counts.lost["finished follow-up missing in loyalty"] = [
        t for t, r in by_id.items() if r["status"] in ("completed", "missed") and t not in finished
    ]
    completed = await events("followup", "regulars.followup.completed.v1")
    unhappy = {e["customer_id"] for e in completed if not e["satisfied"]}
    with_case = await column("SELECT customer_id FROM feedback.cases WHERE shop_id = $1", shop)
    counts.lost["unhappy call without a recovery case"] = sorted(unhappy - with_case)
    survey_wanted = {e["customer_id"] for e in completed if e["satisfied"]} | {
        e["customer_id"] for e in await events("followup", "regulars.followup.missed.v1")
    }
    surveyed = await column("SELECT customer_id FROM feedback.surveys WHERE shop_id = $1", shop)
    counts.lost["follow-up without its survey"] = sorted(survey_wanted - surveyed)
    responses = await column(
        "SELECT survey_id::text FROM feedback.responses WHERE shop_id = $1", shop
    )
    counts.lost["survey answer not kept"] = sorted(set(acc.answers) - responses)
    answered = await conn.fetchval("SELECT count(*) FROM loyalty.answers WHERE shop_id = $1", shop)
    if answered < len(responses):
        counts.lost["survey answer missing in loyalty"] = [f"{len(responses) - answered} answers"]

    # -- messages: what followup sent reached a receiver, once
    sent = await conn.fetch(
        "SELECT id, customer_id, channel, purpose, to_staff, status FROM followup.messages"
        " WHERE shop_id = $1 AND status IN ('sent', 'delivered')",
        shop,
    )
    assert cluster.sys.mail is not None and cluster.sys.sms is not None
    mail = list(cluster.sys.mail.messages)
    texts = [r for r in _texts(cluster.sys.sms.folder)]
    mail_ids = Counter(str(m["Message-ID"]) for m in mail)
    emails_sent = sum(1 for r in sent if r["channel"] == "email")
    if len(mail_ids) < emails_sent:
        counts.lost["emails marked sent, never received"] = [
            f"{emails_sent - len(mail_ids)} emails"
        ]
    counts.duplicates["the same email received twice (Message-ID)"] = [
        mid for mid, n in mail_ids.items() if n > 1
    ]
    counts.duplicates["the same email to the same person twice (To, Subject, text)"] = twice(
        (str(m["To"]), str(m["Subject"]), _text_of(m)) for m in mail
    )
    counts.duplicates["the same text to the same number twice"] = twice(
        (t["to"], t["body"]) for t in texts
    )
    sms_sent = sum(1 for r in sent if r["channel"] == "sms")
    if len(texts) < sms_sent:
        counts.lost["texts marked sent, never received"] = [f"{sms_sent - len(texts)} texts"]

    # -- duplicate effects in the databases
    counts.duplicates["second follow-up task for a visit"] = twice(
        r["repair_order_id"] for r in tasks
    )
    scheduled = await events("followup", "regulars.followup.scheduled.v1")
    counts.duplicates["follow-up scheduled twice"] = twice(e["task_id"] for e in scheduled)
    cases = await conn.fetch("SELECT id, incident_key FROM feedback.cases WHERE shop_id = $1", shop)
    counts.duplicates["second recovery case for an incident"] = twice(
        r["incident_key"] for r in cases
    )
    opened = await events("feedback", "regulars.recovery_case.opened.v1")
    counts.duplicates["recovery case opened twice"] = twice(e["case_id"] for e in opened)
    escalated = await events("feedback", "regulars.recovery_case.escalated.v1")
    counts.duplicates["escalation decided twice"] = twice(
        (e["case_id"], e["to_level"], e["clock"]) for e in escalated
    )
    history = await conn.fetch(
        "SELECT h.case_id, h.kind, h.data::text AS data FROM feedback.case_history h"
        " JOIN feedback.cases c ON c.id = h.case_id WHERE c.shop_id = $1 AND h.kind IN"
        " ('opened', 'escalated')",
        shop,
    )
    counts.duplicates["case history entry twice"] = twice(
        (str(r["case_id"]), r["kind"], r["data"]) for r in history
    )
    stages = await events("loyalty", "regulars.lifecycle.stage_changed.v1")
    last: dict[str, str] = {}
    repeated: list[str] = []
    for e in stages:
        if last.get(e["customer_id"]) == e["to_stage"]:
            repeated.append(f"{e['customer_id']}->{e['to_stage']}")
        last[e["customer_id"]] = e["to_stage"]
    counts.duplicates["stage change to the stage it was in"] = repeated
    requested = await events("feedback", "regulars.survey.requested.v1")
    counts.duplicates["survey requested twice"] = twice(
        (e["customer_id"], e.get("repair_order_id"), e["reason"], e.get("case_id"))
        for e in requested
    )

    # -- timers fired more than once
    missed = await events("followup", "regulars.followup.missed.v1")
    counts.timers_twice["follow-up missed twice"] = twice(e["task_id"] for e in missed)
    at_risk = await events("feedback", "regulars.recovery_case.sla_at_risk.v1")
    counts.timers_twice["SLA warning twice"] = twice(
        (e["case_id"], e["clock"], e["due_at"]) for e in at_risk
    )
    counts.timers_twice["escalation timer twice"] = twice(
        (e["case_id"], e.get("breached_due_at"), e["clock"]) for e in escalated
    )
    for schema in SERVICES:
        exists = await conn.fetchval("SELECT to_regclass($1)", f"{schema}.timers")
        if exists is None:
            continue
        rows = await conn.fetch(
            f"SELECT key FROM {schema}.timers WHERE fired_at IS NOT NULL"
            " GROUP BY key HAVING count(*) > 1"
        )
        counts.timers_twice[f"{schema} timer row fired twice"] = [r["key"] for r in rows]
    fired = await conn.fetchval(
        "SELECT count(*) FROM feedback.timers WHERE fired_at IS NOT NULL"
    ) + await conn.fetchval("SELECT count(*) FROM followup.timers WHERE fired_at IS NOT NULL")

    # -- webhooks: each subscribed event delivered, under one webhook-id
    got = cluster.webhooks.deliveries()
    by_subject: dict[tuple[str, str], set[str]] = defaultdict(set)
    for d in got:
        data = d.event.get("data", {})
        subject = data.get("repair_order_id") or data.get("customer_id") or ""
        by_subject[(d.event.get("type", ""), subject)].add(d.webhook_id)
    for event_id, (kind, data) in acc.events.items():
        ce_type = f"regulars.{kind}.v1"
        subject = data.get("repair_order_id") or data["customer_id"]
        ids = by_subject.get((ce_type, subject), set())
        if not ids:
            counts.lost["subscribed event never delivered to the webhook"].append(event_id)
        elif len(ids) > 1:
            counts.duplicates["webhook delivered under two webhook-ids"].append(event_id)
    redelivered = len(got) - len({d.webhook_id for d in got})

    dead = {}
    for schema in SERVICES:
        exists = await conn.fetchval("SELECT to_regclass($1)", f"{schema}.dead_letters")
        if exists is not None:
            dead[schema] = await conn.fetchval(f"SELECT count(*) FROM {schema}.dead_letters")
    counts.notes.append(
        f"effects: {len(tasks)} follow-up tasks, {len(cases)} recovery cases,"
        f" {len(escalated)} escalations, {len(stages)} stage changes, {len(mail)} emails and"
        f" {len(texts)} texts received, {len(got)} webhook deliveries ({redelivered} a"
        f" retry of the same webhook-id, allowed), {fired} timers fired"
    )
    counts.notes.append(f"dead letters: {dead}")
    return counts


def _window() -> Any:
    from datetime import timedelta

    from regulars_shop.policy import parse_duration

    window: timedelta = parse_duration(str(POLICY["follow_up_delay"])) + parse_duration(
        str(POLICY["follow_up_missed_after"])
    )
    return window


def _texts(folder: Path) -> list[dict[str, Any]]:
    if not folder.exists():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _text_of(message: Any) -> str:
    body = message.get_body(preferencelist=("plain",)) if hasattr(message, "get_body") else None
    return body.get_content() if body is not None else ""


# -- the whole run ----------------------------------------------------------------------


@dataclass
class Plan:
    seed: int
    #: seconds of faults (at least one full turn of them)
    duration: float
    rate: float = 1.5
    at_once: int = 40
    gap: tuple[float, float] = (3.0, 7.0)
    settle: float = 150.0


async def run(plan: Plan, keep: bool = False) -> Counts:
    wd = workdir()
    cluster = Cluster(wd)
    started = time.monotonic()
    log(f"seed {plan.seed}, {plan.duration:.0f} s of faults, two replicas of each service; in {wd}")
    try:
        await cluster.start()
        shop_id, key = await cluster.sys.create_shop("Chaos Motors", policy=POLICY)
        load = Load(cluster, shop_id, key, plan.seed)
        await _ready_everywhere(cluster, load)
        hook = await _subscribe(cluster, key)
        log(f"up in {time.monotonic() - started:.0f} s; webhook {hook}; load starts")
        stop = asyncio.Event()
        loading = asyncio.create_task(load.run(stop, plan.rate, plan.at_once))
        await asyncio.sleep(8)
        faults = await inflict(cluster, random.Random(plan.seed), plan.duration, plan.gap)
        await asyncio.sleep(5)
        stop.set()
        await loading
        log(f"{len(faults)} faults; {load.stories} customers' visits; settling")
        await cluster.healthy()
        counts = await _settled(cluster, load, shop_id, plan.settle)
        counts.notes.append(f"faults: {len(faults)}: " + "; ".join(faults))
        counts.notes.append(f"calls answered by a fault and tried again: {load.accepted.retried}")
        if load.errors:
            counts.notes.append(f"load errors ({len(load.errors)}): {load.errors[:5]}")
        await load.close()
        counts.notes.append(f"seed {plan.seed}; took {time.monotonic() - started:.0f} s")
        return counts
    finally:
        cluster.stop()
        if keep:
            log(f"logs and data kept in {wd}")
        else:
            shutil.rmtree(wd, ignore_errors=True)


async def _ready_everywhere(cluster: Cluster, load: Load) -> None:
    """The shop's key and policy have reached every replica of every service."""
    deadline = time.monotonic() + 90
    checks = [
        ("followup", "/v1/followups"),
        ("feedback", "/v1/cases"),
        ("loyalty", "/v1/customers"),
    ]
    while time.monotonic() < deadline:
        ok = True
        for name, path in checks:
            for url in cluster.urls(name):
                with contextlib.suppress(httpx.HTTPError):
                    if (await load.http.get(url + path)).status_code == 200:
                        continue
                ok = False
        policy = await cluster.sys.fetch(
            "SELECT policy::text AS p FROM feedback.shop_policies WHERE shop_id = $1",
            uuid.UUID(load.shop_id),
        )
        ok = ok and bool(policy) and "maria" in policy[0]["p"]
        if ok:
            return
        await asyncio.sleep(0.5)
    raise AssertionError("the shop never reached every service")


async def _subscribe(cluster: Cluster, key: str) -> str:
    async with httpx.AsyncClient(base_url=cluster.urls("intake")[0], headers=auth(key)) as http:
        r = await http.post(
            "/v1/webhooks",
            json={
                "url": cluster.webhooks.url("/hooks/chaos"),
                "event_types": list(SUBSCRIBED),
                "description": "the fault suite's receiver",
            },
        )
        assert r.status_code == 201, r.text
        made: str = r.json()["id"]
        return made


async def _settled(cluster: Cluster, load: Load, shop_id: str, limit: float) -> Counts:
    """Counted again until nothing is missing (or ``limit`` s): what is in flight lands."""
    deadline = time.monotonic() + limit
    counts = await count(cluster, load, shop_id)
    while not all(not v for v in counts.lost.values()) and time.monotonic() < deadline:
        await asyncio.sleep(3)
        counts = await count(cluster, load, shop_id)
    await asyncio.sleep(5)  # anything late or doubled shows by now
    return await count(cluster, load, shop_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED") or 1))
    parser.add_argument(
        "--duration",
        type=float,
        default=float(os.environ.get("DURATION") or 600),
        help="seconds of faults (every fault at least once, again and again until then)",
    )
    parser.add_argument(
        "--rate", type=float, default=1.5, help="customers' visits started per second"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and the data")
    args = parser.parse_args(argv)

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt  # so that everything started is stopped on the way out

    signal.signal(signal.SIGTERM, interrupted)
    plan = Plan(seed=args.seed, duration=args.duration, rate=args.rate)
    counts = asyncio.run(run(plan, keep=args.keep))
    print(counts.render(), flush=True)
    return 0 if counts.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
