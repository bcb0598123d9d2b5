"""A local stand-in for a Twilio-compatible SMS gateway, for `make run` only.

Real texts need a paid gateway; on one machine, messages are kept as JSON files (one per
message, in arrival order) so a person can read what customers would have received. It
honours the idempotency token as the real API does, so a retried send is kept once.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def app(folder: Path) -> FastAPI:
    folder.mkdir(parents=True, exist_ok=True)
    seen: dict[str, str] = {}
    sink = FastAPI(title="Regulars local SMS sink")

    @sink.post("/2010-04-01/Accounts/{account}/Messages.json")
    async def send(account: str, request: Request) -> JSONResponse:
        # The gateway's API is form-encoded; parsed here without a multipart dependency.
        fields = parse_qs((await request.body()).decode(), keep_blank_values=True)
        form = {k: v[0] for k, v in fields.items()}
        token = request.headers.get("i-twilio-idempotency-token", "")
        if token and token in seen:
            return JSONResponse({"sid": seen[token], "status": "queued"}, status_code=201)
        sid = "SM" + uuid.uuid4().hex
        record = {
            "sid": sid,
            "account": account,
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "idempotency_token": token,
            "received_at": time.time(),
        }
        (folder / f"{time.time_ns()}-{sid}.json").write_text(json.dumps(record, indent=2))
        if token:
            seen[token] = sid
        return JSONResponse({"sid": sid, "status": "queued"}, status_code=201)

    return sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(app(args.dir), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
