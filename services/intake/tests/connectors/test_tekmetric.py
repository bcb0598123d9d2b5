from __future__ import annotations

import pytest
from regulars_intake.domain.connectors import Choices, tekmetric
from regulars_intake.domain.connectors.common import MappingFailed

from services.intake.tests.connectors.support import body, delivery, payload, postings

CHOICES = Choices(timezone="America/Chicago")


def _map(name: str) -> list[dict]:  # type: ignore[type-arg]
    return tekmetric.map_delivery(
        payload("tekmetric", name), CHOICES, delivery(body("tekmetric", name))
    )


def test_the_token_in_the_hook_url_is_the_credential() -> None:
    raw = body("tekmetric", "ro_completed")
    assert tekmetric.verify(delivery(raw, query={"token": "tk_live_8c1f2a9e"}), "tk_live_8c1f2a9e")
    assert not tekmetric.verify(
        delivery(raw, query={"token": "tk_live_8c1f2a9f"}), "tk_live_8c1f2a9e"
    )
    assert not tekmetric.verify(delivery(raw), "tk_live_8c1f2a9e")


def test_a_completed_repair_order_is_one_visit_with_cents_kept() -> None:
    (visit,) = postings(_map("ro_completed"))
    assert visit.short_type == "service.completed"
    event = visit.event.model_dump()
    assert event["repair_order_id"] == "88231045"
    assert event["customer_id"] == "41290577"
    assert event["total_cents"] == 62469
    assert event["mileage"] == 84123
    assert event["advisor"] == "5512"
    assert event["asset_id"] == "71402233"


def test_completed_then_posted_is_the_same_visit_and_an_invoice() -> None:
    completed = _map("ro_completed")
    posted = _map("ro_posted")
    assert [p["type"] for p in posted] == ["service.completed", "invoice.issued"]
    assert posted[0]["id"] == completed[0]["id"], "one id: the second is a duplicate"
    assert posted[1]["data"]["amount_cents"] == 62469


def test_a_resend_maps_to_the_same_postings() -> None:
    assert _map("ro_completed") == _map("ro_completed")


def test_a_deleted_repair_order_is_voided() -> None:
    (void,) = postings(_map("ro_deleted"))
    assert void.short_type == "service.voided"
    assert void.event.model_dump()["repair_order_id"] == "88231045"


def test_work_in_progress_with_a_sentinel_date_is_nothing_yet() -> None:
    assert _map("ro_wip_sentinel") == []


def test_a_customer_payment_and_appointment() -> None:
    (customer,) = postings(_map("customer"))
    assert customer.event.model_dump()["phone"] == "(512) 555-0143"  # the primary one
    assert customer.event.model_dump()["name"] == "Dana Whitfield"
    (paid,) = postings(_map("payment"))
    assert paid.short_type == "invoice.paid"
    assert paid.event.model_dump()["amount_cents"] == 62469
    (booked,) = postings(_map("appointment"))
    assert booked.short_type == "appointment.booked"


def test_a_completed_order_without_a_customer_is_refused_by_name() -> None:
    broken = payload("tekmetric", "ro_completed")
    broken["data"]["customerId"] = 0  # seen in samples for "none"
    with pytest.raises(MappingFailed, match="customerId"):
        tekmetric.map_delivery(broken, CHOICES, delivery(b"{}"))


def test_the_shop_chooses_which_status_completes() -> None:
    only_posted = Choices(completed_statuses=frozenset({"5"}))
    raw = body("tekmetric", "ro_completed")
    assert (
        tekmetric.map_delivery(payload("tekmetric", "ro_completed"), only_posted, delivery(raw))
        == []
    )
