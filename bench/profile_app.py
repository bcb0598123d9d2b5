"""An app under pyinstrument, served as ``regulars_runtime.service.serve`` serves a service.

``python bench/profile_app.py intake OUT_DIR``: the real intake (``bootstrap.build``, workers
on), configured from the environment like the service (DATABASE_URL, PORT...).
``python bench/profile_app.py plain OUT_DIR``: the no-I/O endpoint of ``plain_app.py``, the
calibration: the profiler's per-call overhead inflates call-heavy code (the framework),
so intake's profile is read against the plain one taken the same way.
SIGTERM stops uvicorn gracefully; then ``OUT_DIR/<name>-profile.{txt,html,json}`` are
written (the JSON is pyinstrument's session format, which ``profiling.py`` summarises).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from pyinstrument import Profiler


def _app(name: str) -> tuple[FastAPI, str, int]:
    if name == "plain":
        import plain_app

        return plain_app.app, "127.0.0.1", int(os.environ["PORT"])
    from regulars_intake.bootstrap import DEFINITION, IntakeSettings
    from regulars_runtime.logging import configure
    from regulars_runtime.service import create_app
    from regulars_runtime.settings import load

    settings = load(IntakeSettings)
    configure("intake", settings.log_level)
    return create_app(DEFINITION, settings), settings.host, settings.port


def main() -> None:
    name, out = sys.argv[1], Path(sys.argv[2])
    app, host, port = _app(name)
    # uvicorn re-raises the SIGTERM it caught once it has shut down; with the default
    # action that would kill the process before the reports below are written.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    # async_mode="disabled": sample the thread's real stack, so the profile shows where
    # CPU goes (the machine is CPU-bound), not which coroutine was waiting.
    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=20,
            loop="uvloop",
            http="httptools",
        )
    finally:
        session = profiler.stop()
        out.mkdir(parents=True, exist_ok=True)
        session.save(out / f"{name}-profile.json")
        (out / f"{name}-profile.txt").write_text(profiler.output_text(show_all=False))
        (out / f"{name}-profile.html").write_text(profiler.output_html())


if __name__ == "__main__":
    main()
