"""A request acts for a shop by its API key or by a staff member's token; endpoints only a
shop's system calls take the key alone."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Query, Request
from regulars_runtime import staff
from regulars_runtime.service import (
    ServiceContext,
    ServiceDefinition,
    ShopApiKey,
    ShopId,
    Wiring,
    create_app,
    staff_of,
)
from regulars_runtime.settings import ServiceSettings
from regulars_runtime.staff import StaffPrincipal

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
KEY = "a-staff-token-key-of-this-installation-0123456789"
SHOP_A = uuid.UUID("00000000-0000-4000-8000-00000000000a")
SHOP_B = uuid.UUID("00000000-0000-4000-8000-00000000000b")
API_KEY_B = "rk_0123456789abcdef_the-secret-of-shop-b"

router = APIRouter()


@router.get("/v1/who")
async def who(request: Request, shop: ShopId, since: int = Query()) -> dict[str, Any]:
    person = staff_of(request)
    return {
        "shop": str(shop),
        "staff": None if person is None else [person.staff_id, person.role],
        "since": since,
    }


@router.post("/v1/system-only")
async def system_only(shop: ShopApiKey) -> dict[str, str]:
    return {"shop": str(shop)}


class _Settings(ServiceSettings):
    service = "notes"


def _wire(_pool: Any, _settings: _Settings) -> Wiring[None]:
    raise AssertionError("the tests run without the lifespan")


DEFINITION: ServiceDefinition[_Settings, None] = ServiceDefinition(
    name="notes", title="notes", description="a test service", settings=_Settings, wire=_wire,
    routers=[router],
)  # fmt: skip


class _Keys:
    """The API keys of shop B (the ones in the database, in the service)."""

    async def shop_for(
        self, authorization: str | None, client: str | None = None
    ) -> uuid.UUID | None:
        return SHOP_B if authorization == f"Bearer {API_KEY_B}" else None


def _client(settings: _Settings) -> httpx.AsyncClient:
    app = create_app(DEFINITION, settings)
    app.state.ctx = ServiceContext(
        settings=settings, pool=None, keys=_Keys(), deps=None, bus=None, clock=lambda: NOW
    )  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGULARS_STAFF_TOKEN_KEY", raising=False)
    monkeypatch.delenv("REGULARS_EMBEDDED", raising=False)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with _client(
        _Settings(database_url="postgresql://unused", REGULARS_STAFF_TOKEN_KEY=KEY)
    ) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(role: staff.Role = "advisor", shop: uuid.UUID = SHOP_A, at: datetime = NOW) -> str:
    return staff.mint(KEY, StaffPrincipal(shop, "sam", role), at)


async def test_a_staff_token_acts_for_its_shop_and_names_its_staff_member(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/v1/who?since=1", headers=bearer(token("service_manager")))
    assert r.status_code == 200, r.text
    assert r.json() == {"shop": str(SHOP_A), "staff": ["sam", "service_manager"], "since": 1}


async def test_the_api_key_still_acts_for_its_shop_and_names_no_staff_member(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/v1/who?since=1", headers=bearer(API_KEY_B))
    assert r.json() == {"shop": str(SHOP_B), "staff": None, "since": 1}


async def test_an_expired_or_forged_token_is_401_naming_it(client: httpx.AsyncClient) -> None:
    expired = token(at=NOW - staff.LIFETIME - timedelta(minutes=1))
    forged = staff.mint(
        "someone-elses-key-" + "x" * 30, StaffPrincipal(SHOP_A, "sam", "owner"), NOW
    )
    for bad in (expired, forged, token()[:-4] + "AAAA"):
        r = await client.get("/v1/who?since=1", headers=bearer(bad))
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["detail"] == "staff token: expired or not signed by this installation"


async def test_credentials_are_checked_before_the_query(client: httpx.AsyncClient) -> None:
    expired = token(at=NOW - timedelta(hours=1))
    assert (await client.get("/v1/who", headers=bearer(expired))).status_code == 401
    assert (await client.get("/v1/who", headers=bearer(token()))).status_code == 422


async def test_without_a_key_configured_staff_tokens_are_not_accepted() -> None:
    settings = _Settings(database_url="postgresql://unused")
    assert settings.staff_key() is None
    async with _client(settings) as client:
        r = await client.get("/v1/who?since=1", headers=bearer(token("owner")))
        assert r.status_code == 401
        assert "staff tokens are not accepted here" in r.json()["detail"]
        assert "REGULARS_STAFF_TOKEN_KEY" in r.json()["detail"]
        ok = await client.get("/v1/who?since=1", headers=bearer(API_KEY_B))
        assert ok.json()["shop"] == str(SHOP_B)


async def test_what_only_the_shops_system_calls_refuses_a_staff_token(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/v1/system-only", headers=bearer(token("owner")))
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == (
        "POST /v1/system-only takes the shop's API key, not a staff token"
    )
    forged = await client.post("/v1/system-only", headers=bearer(token()[:-4] + "AAAA"))
    assert forged.status_code == 401
    assert (await client.post("/v1/system-only")).status_code == 401
    r = await client.post("/v1/system-only", headers=bearer(API_KEY_B))
    assert r.json() == {"shop": str(SHOP_B)}
