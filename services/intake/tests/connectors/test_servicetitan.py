from __future__ import annotations

from typing import Any

from regulars_intake.domain.connectors import Choices, servicetitan

from services.intake.tests.connectors.support import (
    body,
    delivery,
    payload,
    postings,
    servicetitan_headers,
)

SECRET = "st_hmac_key_0123456789abcdef0123456789abcdef"
CHOICES = Choices(timezone="America/Chicago", money="dollars")


def _map(name: str) -> list[dict[str, Any]]:
    return servicetitan.map_delivery(
        payload("servicetitan", name), CHOICES, delivery(body("servicetitan", name))
    )


def test_hmac_of_the_body_or_the_token_for_v1() -> None:
    raw = body("servicetitan", "job_completed_v1")
    assert servicetitan.verify(delivery(raw, servicetitan_headers(SECRET, raw)), SECRET)
    assert not servicetitan.verify(delivery(raw, servicetitan_headers("x" * 40, raw)), SECRET)
    assert servicetitan.verify(delivery(raw, query={"token": SECRET}), SECRET)
    assert not servicetitan.verify(delivery(raw), SECRET), "unsigned is refused"


def test_a_completion_without_offset_is_read_in_the_shops_timezone() -> None:
    customer, visit, invoice = postings(_map("job_completed_v1"))
    assert customer.event.model_dump()["phone"] == "6155550108"
    assert customer.event.model_dump()["email"] == "owen.castillo@example.com"
    data = visit.event.model_dump()
    # 15:42 in Nashville in November is 21:42 UTC
    assert data["completed_at"].isoformat() == "2026-11-21T15:42:10-06:00"
    assert data["total_cents"] == 41235, "float dollars to cents"
    assert data["advisor"] == "5099"
    assert data["asset_id"] == "40011230"
    # the sentinel due date falls back to the invoice date
    assert invoice.event.model_dump()["due_at"].isoformat() == "2026-11-21T15:50:00-06:00"


def test_a_cancelled_job_is_voided() -> None:
    (void,) = postings(_map("job_canceled"))
    assert void.short_type == "service.voided"
    assert void.event.model_dump()["repair_order_id"] == "61028734"
