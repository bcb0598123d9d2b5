from __future__ import annotations

from regulars_intake.domain.connectors import Choices, jobber

from services.intake.tests.connectors.support import (
    NOW,
    body,
    delivery,
    jobber_headers,
    payload,
    postings,
)

SECRET = "jobber_client_secret_4f1c9e"
CHOICES = Choices(timezone="America/Denver")


def test_the_hmac_header_is_base64_of_the_body() -> None:
    raw = body("jobber", "webhook_job_closed")
    assert jobber.verify(delivery(raw, jobber_headers(SECRET, raw)), SECRET)
    assert not jobber.verify(delivery(raw + b"\n", jobber_headers(SECRET, raw)), SECRET)
    assert not jobber.verify(delivery(raw), SECRET)


def test_the_thin_payload_names_what_to_fetch() -> None:
    event = jobber.thin(payload("jobber", "webhook_job_closed"), CHOICES)
    query, variables, field = jobber.query_for(event) or ("", {}, "")
    assert variables == {"id": "Z2lkOi8vSm9iYmVyL0pvYi82NTQzMjE="}
    assert field == "job"
    assert "completedAt" in query and "client" in query


def test_the_misspelt_occured_at_is_read_too() -> None:
    event = jobber.thin(payload("jobber", "webhook_visit_complete_misspelt"), CHOICES)
    assert event.occurred_at is not None and event.occurred_at.isoformat().startswith(
        "2026-11-22T16:59:40"
    )


def test_the_fetched_job_is_a_visit_with_dollars_in_cents() -> None:
    event = jobber.thin(payload("jobber", "webhook_job_closed"), CHOICES)
    job = payload("jobber", "graphql_job")["data"]["job"]
    customer, visit = postings(jobber.map_event(event, job, CHOICES, NOW))
    assert customer.event.model_dump()["email"] == "grace.holloway@example.com"
    data = visit.event.model_dump()
    assert data["total_cents"] == 28950
    assert data["repair_order_id"] == "Z2lkOi8vSm9iYmVyL0pvYi82NTQzMjE="
    again = jobber.map_event(event, job, CHOICES, NOW)
    assert again[1]["id"] == jobber.map_event(event, job, CHOICES, NOW)[1]["id"]


def test_a_visit_completion_of_the_same_job_is_the_same_visit() -> None:
    closed = jobber.thin(payload("jobber", "webhook_job_closed"), CHOICES)
    visit = jobber.thin(payload("jobber", "webhook_visit_complete_misspelt"), CHOICES)
    job = payload("jobber", "graphql_job")["data"]["job"]
    by_visit = jobber.map_event(visit, {"id": "v", "completedAt": None, "job": job}, CHOICES, NOW)
    assert by_visit[1]["id"] == jobber.map_event(closed, job, CHOICES, NOW)[1]["id"]


def test_a_destroyed_job_is_voided_without_a_fetch() -> None:
    event = jobber.thin(payload("jobber", "webhook_job_destroy"), CHOICES)
    assert jobber.query_for(event) is None
    (void,) = postings(jobber.map_event(event, None, CHOICES, NOW))
    assert void.short_type == "service.voided"
