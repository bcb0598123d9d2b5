from __future__ import annotations

import uuid

import orjson
import pytest
from regulars_events.catalogue import InvoiceIssued, InvoicePaid, ServiceCompleted
from regulars_intake.domain.postings import MAX_EVENT_BYTES, Rejected, body_hash, parse_posting

COMPLETED = {
    "type": "service.completed",
    "id": "ro-1-done",
    "occurred_at": "2026-11-20T16:30:00-05:00",
    "data": {
        "repair_order_id": "1",
        "customer_id": "42",
        "completed_at": "2026-11-20T16:30:00-05:00",
        "shop_field": {"kept": True},
    },
}


def test_a_good_posting_becomes_its_event_with_unknown_fields_kept() -> None:
    posting = parse_posting(COMPLETED)
    assert isinstance(posting.event, ServiceCompleted)
    assert posting.event.model_dump()["shop_field"] == {"kept": True}
    assert posting.client_id == "ro-1-done"


INVOICE_DATA = {
    "invoice_id": "inv-7",
    "customer_id": "42",
    "amount_cents": 18_950,
    "due_at": "2026-12-20T00:00:00-05:00",
}


@pytest.mark.parametrize(
    ("short_type", "cls"), [("invoice.issued", InvoiceIssued), ("invoice.paid", InvoicePaid)]
)
def test_an_invoice_is_taken_issued_or_paid_alike(short_type: str, cls: type) -> None:
    raw = {"type": short_type, "occurred_at": "2026-11-20T10:00:00Z", "data": INVOICE_DATA}
    posting = parse_posting(raw)
    assert isinstance(posting.event, cls)
    assert posting.event.type == f"regulars.{short_type}.v1"
    assert posting.event.subject() == "42"


@pytest.mark.parametrize("missing", ["invoice_id", "customer_id", "amount_cents", "due_at"])
def test_an_issued_invoice_without_a_field_is_422_naming_it(missing: str) -> None:
    data = {k: v for k, v in INVOICE_DATA.items() if k != missing}
    raw = {"type": "invoice.issued", "occurred_at": "2026-11-20T10:00:00Z", "data": data}
    with pytest.raises(Rejected) as caught:
        parse_posting(raw)
    assert caught.value.status == 422
    assert [e.field for e in caught.value.errors] == [f"data.{missing}"]


def test_an_issued_invoices_due_time_needs_an_offset() -> None:
    data = {**INVOICE_DATA, "due_at": "2026-12-20T00:00:00"}
    raw = {"type": "invoice.issued", "occurred_at": "2026-11-20T10:00:00Z", "data": data}
    with pytest.raises(Rejected) as caught:
        parse_posting(raw)
    assert [e.field for e in caught.value.errors] == ["data.due_at"]


def test_event_id_is_stable_per_shop_and_distinct_across_shops() -> None:
    posting = parse_posting(COMPLETED)
    a, b = uuid.uuid4(), uuid.uuid4()
    assert posting.event_id(a) == parse_posting(dict(COMPLETED)).event_id(a)
    assert posting.event_id(a) != posting.event_id(b)


def test_body_hash_ignores_key_order_and_id_but_not_data() -> None:
    reordered = {
        "data": COMPLETED["data"],
        "occurred_at": COMPLETED["occurred_at"],
        "type": COMPLETED["type"],
        "id": "other",
    }
    assert body_hash(reordered) == body_hash(COMPLETED)
    changed = {**COMPLETED, "data": {**COMPLETED["data"], "customer_id": "43"}}
    assert body_hash(changed) != body_hash(COMPLETED)


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        ([], 400, None),
        ({"occurred_at": "2026-11-20T10:00:00Z", "data": {}}, 422, "type"),
        ({**COMPLETED, "type": "service.finished"}, 422, "type"),
        ({**COMPLETED, "data": "x"}, 422, "data"),
        ({k: v for k, v in COMPLETED.items() if k != "occurred_at"}, 422, "occurred_at"),
        ({**COMPLETED, "occurred_at": "yesterday"}, 422, "occurred_at"),
        ({**COMPLETED, "occurred_at": "2026-11-20T10:00:00"}, 422, "occurred_at"),
        ({**COMPLETED, "id": 7}, 422, "id"),
        ({**COMPLETED, "id": "x" * 201}, 422, "id"),
        ({**COMPLETED, "extra": 1}, 422, "extra"),
        (
            {**COMPLETED, "data": {**COMPLETED["data"], "completed_at": "2026-11-20T16:30:00"}},
            422,
            "data.completed_at",
        ),
        ({**COMPLETED, "data": {"customer_id": "42"}}, 422, "data.repair_order_id"),
        ({**COMPLETED, "data": {**COMPLETED["data"], "mileage": -5}}, 422, "data.mileage"),
    ],
)
def test_bad_postings_are_rejected_naming_the_field(
    raw: object, status: int, field: str | None
) -> None:
    with pytest.raises(Rejected) as caught:
        parse_posting(raw)
    assert caught.value.status == status
    if field is not None:
        assert any(e.field == field for e in caught.value.errors), caught.value.errors


def test_an_event_over_64_kb_is_413() -> None:
    big = {**COMPLETED, "data": {**COMPLETED["data"], "notes": "x" * MAX_EVENT_BYTES}}
    with pytest.raises(Rejected) as caught:
        parse_posting(big)
    assert caught.value.status == 413


def test_batch_position_is_named() -> None:
    with pytest.raises(Rejected) as caught:
        parse_posting({**COMPLETED, "data": {}}, where="events[3]")
    assert caught.value.errors[0].field.startswith("events[3].data")


@pytest.mark.parametrize(
    ("posting", "field"),
    [
        ({**COMPLETED, "id": "ro\x00"}, "id"),
        ({**COMPLETED, "data": {**COMPLETED["data"], "advisor": "sam\x00"}}, "data.advisor"),
        (
            {**COMPLETED, "data": {**COMPLETED["data"], "extra": [{"note": "a\x00b"}]}},
            "data.extra[0].note",
        ),
        ({**COMPLETED, "data": {**COMPLETED["data"], "k\x00": 1}}, "data.k\x00"),
    ],
)
def test_a_nul_character_is_named_not_stored(posting: dict[str, object], field: str) -> None:
    # PostgreSQL text and jsonb cannot hold NUL: caught here as a 422, never a failed insert.
    with pytest.raises(Rejected) as caught:
        parse_posting(posting)
    assert caught.value.status == 422
    assert [e.field for e in caught.value.errors] == [field]


def test_a_nul_in_a_batch_names_the_event() -> None:
    with pytest.raises(Rejected) as caught:
        parse_posting({**COMPLETED, "type": "service.completed\x00"}, where="events[3]")
    assert caught.value.errors[0].field == "events[3].type"


def test_the_nul_search_runs_whenever_the_json_text_could_hold_one() -> None:
    # The endpoint passes the JSON text: a NUL can only arrive written as \u0000.
    posting = {**COMPLETED, "data": {**COMPLETED["data"], "advisor": "sam\x00"}}
    text = orjson.dumps(posting)
    assert b"\\u0000" in text
    with pytest.raises(Rejected):
        parse_posting(orjson.loads(text), body=text)
    clean = orjson.dumps(COMPLETED)
    assert parse_posting(orjson.loads(clean), body=clean).client_id == "ro-1-done"


def test_every_problem_of_a_posting_is_named_at_once() -> None:
    bad = {
        "type": "service.completed",
        "id": 5,
        "occurred_at": "yesterday",
        "data": {
            "repair_order_id": ["x"],
            "customer_id": "c1",
            "completed_at": "2026-11-23T10:00:00Z",
        },
    }
    with pytest.raises(Rejected) as caught:
        parse_posting(bad)
    fields = [e.field for e in caught.value.errors]
    assert fields == ["id", "occurred_at", "data.repair_order_id"]
