"""wrk: installed if missing, run with the bench's fixed shape, its summary parsed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).with_name("post_event.lua")
THREADS = 2
CONNECTIONS = 32
APT_TIMEOUT = 600


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    status_errors: int
    p50_ms: float
    p99_ms: float
    output: str

    @property
    def rps(self) -> float:
        """Answered-as-intended requests per second (an error answer is not throughput)."""
        ok = self.requests - self.status_errors
        return ok / self.seconds if self.seconds else 0.0


def _apt(*args: str) -> int:
    command = ["apt-get", *args]
    if os.geteuid() != 0 and shutil.which("sudo"):
        command = ["sudo", *command]
    print(f"bench: running {' '.join(command)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, env=env, timeout=APT_TIMEOUT, check=False).returncode


def ensure_wrk() -> str:
    """The wrk binary; on a fresh machine, installed from the distribution."""
    found = shutil.which("wrk")
    if found:
        return found
    if not shutil.which("apt-get"):
        raise RuntimeError("wrk is missing and there is no apt-get here: install wrk first")
    print("bench: wrk is not installed; installing it with apt-get", flush=True)
    if _apt("install", "-y", "wrk") != 0:
        # A fresh image often has no package lists yet.
        print("bench: install failed; updating the package lists and trying again", flush=True)
        _apt("update")
        _apt("install", "-y", "wrk")
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is missing and apt-get could not install it")
    print(f"bench: wrk installed at {found}", flush=True)
    return found


def run_wrk(wrk: str, url: str, seconds: int, script_args: list[str]) -> WrkResult:
    """wrk -t2 -c32 against ``url`` (POST /v1/events), in its own process."""
    command = [
        wrk,
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds}s",
        "-s",
        str(LUA),
        url,
        "--",
        *script_args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return _parse(done.stdout)


def _parse(output: str) -> WrkResult:
    line = next((ln for ln in output.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    s = json.loads(line.removeprefix("BENCH_JSON "))
    errors = s["connect_errors"] + s["read_errors"] + s["write_errors"] + s["timeouts"]
    return WrkResult(
        requests=s["requests"],
        seconds=s["duration_us"] / 1e6,
        errors=errors,
        status_errors=s["status_errors"],
        p50_ms=s["p50_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        output=output,
    )
