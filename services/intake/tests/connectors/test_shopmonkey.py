from __future__ import annotations

from datetime import timedelta
from typing import Any

from regulars_intake.domain.connectors import Choices, shopmonkey

from services.intake.tests.connectors.support import (
    NOW,
    body,
    delivery,
    payload,
    postings,
    shopmonkey_headers,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CHOICES = Choices(timezone="America/Denver")


def _map(name: str, choices: Choices = CHOICES) -> list[dict[str, Any]]:
    return shopmonkey.map_delivery(
        payload("shopmonkey", name), choices, delivery(body("shopmonkey", name))
    )


def test_standard_webhooks_signature_verifies_and_nothing_else_does() -> None:
    raw = body("shopmonkey", "order_completed")
    good = shopmonkey_headers(SECRET, raw)
    assert shopmonkey.verify(delivery(raw, good), SECRET)
    assert not shopmonkey.verify(delivery(raw + b" ", good), SECRET), "body changed"
    assert not shopmonkey.verify(delivery(raw, good), "whsec_" + "A" * 32), "another secret"
    assert not shopmonkey.verify(delivery(raw, {**good, "webhook-id": "msg_2"}), SECRET)
    assert not shopmonkey.verify(delivery(raw), SECRET), "no headers"
    stale = shopmonkey_headers(SECRET, raw, at=NOW - timedelta(minutes=10))
    assert not shopmonkey.verify(delivery(raw, stale), SECRET), "a replay of an old delivery"
    several = {**good, "webhook-signature": "v1,bm90IGl0 " + good["webhook-signature"]}
    assert shopmonkey.verify(delivery(raw, several), SECRET), "any of the listed signatures"


def test_a_flood_of_updates_before_completion_is_nothing() -> None:
    assert _map("order_update_flood") == []


def test_completed_then_invoiced_is_one_visit_and_an_invoice() -> None:
    completed = _map("order_completed")
    invoiced = _map("order_invoiced")
    assert [p["type"] for p in completed] == ["service.completed"]
    assert [p["type"] for p in invoiced] == ["service.completed", "invoice.issued"]
    assert completed[0]["id"] == invoiced[0]["id"]
    (visit, invoice) = postings(invoiced)
    assert visit.event.model_dump()["total_cents"] == 18950
    assert visit.event.model_dump()["mileage"] == 40212
    assert invoice.event.model_dump()["amount_cents"] == 18950


def test_the_shop_may_count_the_visit_at_invoicing() -> None:
    on_invoice = Choices(extra={"completed_on": "invoiced"})
    assert _map("order_completed", on_invoice) == []
    assert _map("order_invoiced", on_invoice)[0]["data"]["completed_at"].startswith(
        "2026-11-18T19:45:12"
    )


def test_a_soft_delete_and_a_delete_void_the_order() -> None:
    (void,) = postings(_map("order_soft_deleted"))
    assert void.short_type == "service.voided"
    deleted = payload("shopmonkey", "order_completed")
    deleted["operation"] = "DELETE"
    again = shopmonkey.map_delivery(deleted, CHOICES, delivery(b"{}"))
    assert again[0]["id"] == _map("order_soft_deleted")[0]["id"], "one void however sent"


def test_clearing_the_completion_reopens() -> None:
    (reopened,) = postings(_map("order_reopened"))
    assert reopened.short_type == "service.reopened"


def test_customer_payment_and_appointment_rows() -> None:
    (customer,) = postings(_map("customer_insert"))
    assert customer.event.model_dump()["email"] == "luis.ortega@example.com"
    assert customer.event.model_dump()["phone"] == "+13035550112"
    (paid,) = postings(_map("payment_insert"))
    assert paid.event.model_dump()["invoice_id"] == "6566b7aa5f2a6d0012c1e0f3"
    (booked,) = postings(_map("appointment_insert"))
    assert booked.event.model_dump()["customer_id"] == "6566b6ef5f2a6d0012c1e0a1"


def test_other_tables_are_ignored() -> None:
    vehicle = {"apiVersion": "v3", "operation": "UPDATE", "table": "Vehicle", "data": {"id": "v"}}
    assert shopmonkey.map_delivery(vehicle, CHOICES, delivery(b"{}")) == []
