"""Lighthouse scores for one console page, as a phone sees it.

lighthouse 12.2.3 from .tools/lighthouse (`make lighthouse` installs it, `make bench` depends
on it), Debian's chromium, Lighthouse's default mobile form factor and throttling. A signed-in
page is reached with the staff member's Cookie header; a run that ends on another page (the
sign-in page, say) is an error rather than the other page's scores.

    python bench/lighthouse.py URL [--cookie 'regulars_staff=...']

prints one bench line: `lighthouse performance=.. accessibility=.. best-practices=.. url=..`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VERSION = "12.2.3"
LIGHTHOUSE = ROOT / ".tools" / "lighthouse" / "node_modules" / ".bin" / "lighthouse"
CHROMIUM = "/usr/bin/chromium"
CATEGORIES = ("performance", "accessibility", "best-practices")
# --no-sandbox: the bench runs as root in CI, where chromium's sandbox cannot start
CHROME_FLAGS = "--headless=new --no-sandbox"
TIMEOUT_SECONDS = 180


class LighthouseError(RuntimeError):
    """lighthouse did not score the page; the message carries its stderr."""


def _command(url: str, report: Path, headers: Path | None) -> list[str]:
    command = [
        str(LIGHTHOUSE),
        url,
        "--output=json",
        f"--output-path={report}",
        f"--only-categories={','.join(CATEGORIES)}",
        f"--chrome-flags={CHROME_FLAGS}",
        "--quiet",
    ]
    if headers is not None:
        # a file, not JSON on the command line: the cookie is a signed-in session and
        # anyone on the machine can read a process's arguments
        command.append(f"--extra-headers={headers}")
    return command


def _run(command: list[str], url: str) -> None:
    env = {**os.environ, "CHROME_PATH": CHROMIUM}
    # its own process group, so a timeout stops the chromium lighthouse started as well
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _, err = proc.communicate(timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        raise LighthouseError(
            f"lighthouse took over {TIMEOUT_SECONDS} s on {url}:\n{err.decode(errors='replace')}"
        ) from None
    if proc.returncode != 0:
        raise LighthouseError(
            f"lighthouse exited {proc.returncode} on {url}:\n{err.decode(errors='replace')}"
        )


def _scores(report: dict[str, Any], url: str) -> dict[str, int]:
    problem = report.get("runtimeError")
    if problem:
        raise LighthouseError(f"lighthouse could not load {url}: {problem.get('message', problem)}")
    final = report.get("finalDisplayedUrl", url)
    if final.rstrip("/") != url.rstrip("/"):
        raise LighthouseError(
            f"lighthouse ended on {final}, not {url} (signed out, or a redirect): "
            "those scores would be another page's"
        )
    result: dict[str, int] = {}
    for name in CATEGORIES:
        score = report["categories"][name]["score"]
        if score is None:
            raise LighthouseError(f"lighthouse gave no {name} score for {url}")
        # as Lighthouse's own report rounds: half up
        result[name] = math.floor(score * 100 + 0.5)
    return result


def scores(url: str, *, cookie_header: str | None) -> dict[str, int]:
    """Lighthouse's performance, accessibility and best-practices scores (0-100) for ``url``.

    ``cookie_header`` (``name=value; ...``) is sent with every request the page makes, for a
    page behind staff sign-in. Raises LighthouseError with lighthouse's stderr on failure.
    """
    return scored_report(url, cookie_header=cookie_header)[0]


def scored_report(url: str, *, cookie_header: str | None) -> tuple[dict[str, int], dict[str, Any]]:
    """The scores, as ``scores`` gives them, and lighthouse's whole JSON report (its audits)."""
    if not LIGHTHOUSE.exists():
        raise LighthouseError(f"{LIGHTHOUSE} is missing: `make lighthouse` installs {VERSION}")
    with tempfile.TemporaryDirectory(prefix="regulars-lighthouse-") as tmp:
        report = Path(tmp) / "report.json"
        headers = None
        if cookie_header is not None:
            headers = Path(tmp) / "headers.json"
            headers.touch(mode=0o600)
            headers.write_text(json.dumps({"Cookie": cookie_header}))
        _run(_command(url, report, headers), url)
        found = json.loads(report.read_text())
        return _scores(found, url), found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("url")
    parser.add_argument("--cookie", help="a Cookie header for a signed-in page: 'name=value'")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        got = scores(args.url, cookie_header=args.cookie)
    except LighthouseError as failed:
        print(f"lighthouse: {failed}", file=sys.stderr)
        return 1
    values = " ".join(f"{name}={got[name]}" for name in CATEGORIES)
    print(f"lighthouse {values} seconds={time.monotonic() - started:.1f} url={args.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
