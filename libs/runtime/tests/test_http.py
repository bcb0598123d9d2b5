"""The HTTP conventions every service gets from the platform, on a small app of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from regulars_runtime.bus import MessageBus
from regulars_runtime.http import PROBLEM_JSON, unauthorized
from regulars_runtime.service import ServiceDefinition, Wiring, create_app
from regulars_runtime.settings import ServiceSettings

router = APIRouter()


class Note(BaseModel):
    text: str = Field(max_length=100)
    tags: list[str] = []


class Saved(BaseModel):
    text: str


@router.post("/v1/notes", response_model=Saved)
async def add_note(note: Note) -> dict[str, str]:
    return {"text": note.text}


@router.get("/v1/notes/{note_id}", response_model=Saved)
async def read_note(note_id: str, q: str | None = None) -> dict[str, str]:
    if note_id == "secret":
        raise unauthorized()
    return {"text": f"{note_id}:{q}"}


@router.get("/page/{token}", response_class=HTMLResponse)
async def page(token: str) -> HTMLResponse:
    return HTMLResponse("<p>hi</p>")


@router.post("/page/{token}", response_class=HTMLResponse)
async def post_page(token: str) -> HTMLResponse:
    return HTMLResponse("<p>done</p>")


class _Settings(ServiceSettings):
    service = "notes"


def _wire(_pool: Any, _settings: _Settings) -> Wiring[None]:
    raise AssertionError("the tests run without the lifespan")


DEFINITION: ServiceDefinition[_Settings, None] = ServiceDefinition(
    name="notes",
    title="notes",
    description="a test service",
    settings=_Settings,
    wire=_wire,
    routers=[router],
    body_limit=1024,
)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(DEFINITION, _Settings(database_url="postgresql://unused"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["type"] and body["title"] and body["detail"]
    assert isinstance(body["errors"], list)
    return body


async def test_a_bad_field_is_a_problem_naming_it(client: httpx.AsyncClient) -> None:
    body = _problem(await client.post("/v1/notes", json={"text": "x" * 101, "tags": [3]}), 422)
    assert {e["field"] for e in body["errors"]} == {"text", "tags.0"}
    assert all(e["message"] for e in body["errors"])


async def test_a_body_over_the_limit_is_refused_before_it_is_read(
    client: httpx.AsyncClient,
) -> None:
    declared = await client.post("/v1/notes", content=b"{}", headers={"content-length": "5000"})
    assert "5000" in _problem(declared, 413)["detail"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b'{"text": "' + b"a" * 100

    streamed = await client.post(
        "/v1/notes", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "1024" in _problem(streamed, 413)["detail"]


async def test_a_body_streamed_to_a_read_is_bounded_too(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"a" * 100

    streamed = await client.request("GET", "/v1/notes/n1", content=chunks())
    assert "1024" in _problem(streamed, 413)["detail"]

    async def small() -> AsyncIterator[bytes]:
        yield b"{}"

    # a small one is read and the read answered as without it
    read = await client.request("GET", "/v1/notes/n1", content=small())
    assert read.status_code == 200 and read.json() == {"text": "n1:None"}


async def test_nul_and_bad_utf8_are_422_naming_where(client: httpx.AsyncClient) -> None:
    query = _problem(await client.get("/v1/notes/a?q=%00x"), 422)
    assert query["errors"] == [{"field": "q", "message": "NUL character"}]
    utf8 = _problem(await client.get("/v1/notes/a?q=%C3%28"), 422)
    assert utf8["errors"] == [{"field": "q", "message": "not valid UTF-8"}]
    path = _problem(await client.get("/v1/notes/a%00b"), 422)
    assert path["errors"][0]["field"] == "path"
    body = _problem(
        await client.post("/v1/notes", json={"text": "ok", "tags": ["fine", "no\x00pe"]}), 422
    )
    assert body["errors"] == [{"field": "tags.1", "message": "NUL character"}]
    raw = _problem(
        await client.post(
            "/v1/notes", content=b'{"text": "\xff"}', headers={"content-type": "application/json"}
        ),
        422,
    )
    assert raw["errors"] == [{"field": "text", "message": "not valid UTF-8"}]
    broken = _problem(
        await client.post(
            "/v1/notes", content=b'{"text": \xff', headers={"content-type": "application/json"}
        ),
        422,
    )
    assert broken["errors"] == [{"field": "body", "message": "not valid UTF-8"}]
    # and what is fine still goes through, the body handed on whole
    ok = await client.post("/v1/notes", json={"text": "caf\u00e9"})
    assert ok.status_code == 200 and ok.json() == {"text": "caf\u00e9"}


async def test_401_says_how_to_authenticate(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/notes/secret")
    _problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")


async def test_no_such_route_or_method_is_a_problem_too(client: httpx.AsyncClient) -> None:
    _problem(await client.get("/nowhere"), 404)
    r = await client.delete("/page/t")
    _problem(r, 405)
    assert r.headers["allow"] == "GET, POST"  # both routes of the path, not the first alone


async def test_the_document_declares_what_the_service_answers(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    post = doc["paths"]["/v1/notes"]["post"]
    assert post["security"] == [{"bearer": []}]
    for code in ("401", "413", "422"):
        schema = post["responses"][code]["content"][PROBLEM_JSON]["schema"]
        assert schema == {"$ref": "#/components/schemas/ProblemDetails"}
    assert "404" in doc["paths"]["/v1/notes/{note_id}"]["get"]["responses"]
    page_404 = doc["paths"]["/page/{token}"]["get"]["responses"]["404"]["content"]
    assert "text/html" in page_404
    assert "security" not in doc["paths"]["/page/{token}"]["get"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref


def test_a_bus_without_a_pool_says_so() -> None:
    bus: MessageBus[Any, None] = MessageBus(unit_of_work=lambda conn, cause: None, deps=None)  # type: ignore[arg-type,return-value]
    with pytest.raises(RuntimeError, match="no pool"):
        bus.unit_of_work()


def test_a_cursor_names_where_the_next_page_starts() -> None:
    import uuid
    from datetime import UTC, datetime

    from regulars_runtime.http import Problem, after_cursor, page_cursor

    at, item = datetime(2026, 12, 1, 9, 30, tzinfo=UTC), uuid.uuid4()
    assert after_cursor(page_cursor(at, item)) == (at, item)
    assert after_cursor(None) is None
    for bad in ("D", "bm90IGEgY3Vyc29y", page_cursor(at, item)[:-4]):
        with pytest.raises(Problem) as refused:
            after_cursor(bad)
        assert refused.value.status == 422
        assert refused.value.errors[0]["field"] == "cursor"


async def test_a_problem_never_carries_the_nul_it_refuses(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/notes", json={"text": "ok", "n\x00te": "x"})
    body = _problem(r, 422)
    assert "\x00" not in r.text
    assert body["errors"] == [{"field": "n\\u0000te", "message": "NUL character"}]


async def test_bytes_that_are_not_utf8_are_named_by_their_field(
    client: httpx.AsyncClient,
) -> None:
    body = b'{"text": "ok", "tags": ["fine", "caf\xe9"]}'
    r = await client.post("/v1/notes", content=body, headers={"content-type": "application/json"})
    assert _problem(r, 422)["errors"] == [{"field": "tags.1", "message": "not valid UTF-8"}]
