"""The no-I/O baseline: a FastAPI POST that parses the same body with pydantic, answers 202.

Served exactly as a service is (``regulars_runtime.service.serve``: uvicorn, one process,
uvloop, httptools, no access log), so the ratio measures what intake does per request
beyond HTTP + JSON + validation. Run: ``python bench/plain_app.py PORT``.
"""

from __future__ import annotations

import sys
import uuid

import orjson
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel
from regulars_events.catalogue import ServiceCompleted


class PlainPosting(BaseModel):
    """The posting envelope, with the real event model for ``data``."""

    type: str
    id: str
    occurred_at: AwareDatetime
    data: ServiceCompleted


app = FastAPI()


@app.post("/v1/events", status_code=202)
async def post_event(posting: PlainPosting) -> Response:
    # An answer the size of intake's, so response bytes are not a difference.
    body = {"status": "accepted", "id": posting.id, "event_id": str(uuid.uuid4())}
    return Response(orjson.dumps(body), 202, media_type="application/json")


def main() -> None:
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
