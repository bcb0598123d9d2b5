from __future__ import annotations

from datetime import timedelta
from typing import Any

from regulars_intake.domain.connectors import Choices, housecall_pro

from services.intake.tests.connectors.support import (
    NOW,
    body,
    delivery,
    housecall_headers,
    payload,
    postings,
)

SECRET = "hcp_signing_secret_5d2e8f1a"
CHOICES = Choices(timezone="America/Phoenix")


def _map(name: str) -> list[dict[str, Any]]:
    return housecall_pro.map_delivery(
        payload("housecall_pro", name), CHOICES, delivery(body("housecall_pro", name))
    )


def test_the_api_signature_over_timestamp_and_body() -> None:
    raw = body("housecall_pro", "job_completed")
    good = housecall_headers(SECRET, raw)
    assert housecall_pro.verify(delivery(raw, good), SECRET)
    assert not housecall_pro.verify(delivery(raw, {**good, "api-timestamp": "1764000001"}), SECRET)
    assert not housecall_pro.verify(delivery(b"{}", good), SECRET)
    assert not housecall_pro.verify(delivery(raw, {"api-timestamp": good["api-timestamp"]}), SECRET)
    old = housecall_headers(SECRET, raw, at=NOW - timedelta(hours=1))
    assert not housecall_pro.verify(delivery(raw, old), SECRET)


def test_a_completed_job_brings_its_customer_and_one_visit() -> None:
    customer, visit = postings(_map("job_completed"))
    assert customer.short_type == "customer.upserted"
    assert customer.event.model_dump()["phone"] == "4805550177"
    assert visit.short_type == "service.completed"
    data = visit.event.model_dump()
    assert data["customer_id"] == "cus_4a9e2d7f1b3c4e6a8d0f"
    assert data["total_cents"] == 48500
    assert data["advisor"] == "pro_9c1d3e5f7a"


def test_paid_after_completed_is_the_same_visit_and_the_payment() -> None:
    completed = _map("job_completed")
    paid = _map("job_paid")
    assert [p["type"] for p in paid] == [
        "customer.upserted",
        "invoice.issued",  # none of its own: a paid job's invoice was issued
        "invoice.paid",
        "service.completed",
    ]
    assert paid[1]["data"] == paid[2]["data"]
    assert paid[3]["id"] == completed[1]["id"]
    assert paid[0]["id"] == completed[0]["id"], "the same customer details: the same upsert"


def test_a_cancelled_job_is_voided() -> None:
    (void,) = postings(_map("job_canceled"))
    assert void.short_type == "service.voided"


def test_an_appointment_is_booked_not_completed() -> None:
    kinds = [p.short_type for p in postings(_map("job_appointment_scheduled"))]
    assert kinds == ["customer.upserted", "appointment.booked"]


def test_a_changed_customer_is_a_new_upsert() -> None:
    (updated,) = _map("customer_updated")
    assert updated["id"] != _map("job_completed")[0]["id"]
    assert updated["data"]["phone"] == "4805550178"
    gone = {"event": "customer.deleted", "customer": {"id": "cus_x"}}
    assert housecall_pro.map_delivery(gone, CHOICES, delivery(b"{}")) == []
