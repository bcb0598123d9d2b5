"""Outbound webhooks: the domain's decisions, and the handlers on the in-memory seam."""

from __future__ import annotations

import ipaddress
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from regulars_events.catalogue import CustomerUpserted
from regulars_events.envelope import Envelope
from regulars_intake import webhook_handlers as wh
from regulars_intake.domain.webhooks import (
    DEFAULT_RETRY_SCHEDULE,
    Answer,
    WebhookRejected,
    address_allowed,
    judge,
    parse_networks,
    retry_delay,
)
from regulars_runtime.bus import Received
from regulars_runtime.testing import ShopPolicy
from regulars_shop.policy import Policy
from standardwebhooks.webhooks import Webhook as Verifier

from services.intake.tests.fakes import Intake

SHOP = uuid.uuid4()
OTHER = uuid.uuid4()
CUSTOMER = "regulars.customer.upserted.v1"
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
SCHEDULE = (timedelta(seconds=1),) * 3


def test_the_default_ladder_is_the_issues() -> None:
    minutes = [w.total_seconds() / 60 for w in DEFAULT_RETRY_SCHEDULE]
    assert minutes == [5 / 60, 5, 30, 120, 300, 600, 600]


def test_jitter_stays_within_a_tenth_of_the_wait() -> None:
    rng = random.Random(7)
    waits = [retry_delay(2, DEFAULT_RETRY_SCHEDULE, rng) for _ in range(200)]
    assert all(
        w is not None and timedelta(minutes=4.5) <= w <= timedelta(minutes=5.5) for w in waits
    )
    assert len(set(waits)) > 100
    assert retry_delay(8, DEFAULT_RETRY_SCHEDULE) is None


@pytest.mark.parametrize(
    ("answer", "status", "retries"),
    [
        (Answer(200), "delivered", False),
        (Answer(204), "delivered", False),
        (Answer(500), "pending", True),
        (Answer(503), "pending", True),
        (Answer(429), "pending", True),
        (Answer(None, "timeout"), "pending", True),
        (Answer(None, "connection"), "pending", True),
        (Answer(None, "refused"), "failed", False),
        (Answer(400), "failed", False),
        (Answer(404), "failed", False),
        (Answer(410), "failed", False),
    ],
)
def test_what_an_answer_means(answer: Answer, status: str, retries: bool) -> None:
    verdict = judge(answer, attempts=1, schedule=SCHEDULE, failing_since=None, now=NOW)
    assert verdict.status == status
    assert (verdict.retry_in is not None) is retries
    assert (verdict.disable is not None) is (answer.status_code == 410)


def test_the_ladder_runs_out_then_the_delivery_fails() -> None:
    last = judge(Answer(500), attempts=4, schedule=SCHEDULE, failing_since=None, now=NOW)
    assert last.status == "failed" and last.retry_in is None


def test_five_days_of_failure_disable_the_endpoint() -> None:
    day4 = judge(
        Answer(500), attempts=1, schedule=SCHEDULE, failing_since=NOW - timedelta(days=4), now=NOW
    )
    day5 = judge(
        Answer(500), attempts=1, schedule=SCHEDULE, failing_since=NOW - timedelta(days=5), now=NOW
    )
    assert day4.disable is None and day5.disable is not None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.9",
        "172.16.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
        "fd00::1",
    ],
)
def test_private_addresses_are_refused(address: str) -> None:
    assert not address_allowed(address, ())


def test_public_and_allowed_addresses_pass() -> None:
    assert address_allowed("93.184.215.14", ())
    assert address_allowed("2606:4700::1111", ())
    allowed = parse_networks("127.0.0.1/32, 10.0.0.0/8")
    assert allowed == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8"))
    assert address_allowed("127.0.0.1", allowed) and address_allowed("10.9.9.9", allowed)
    assert not address_allowed("127.0.0.2", allowed)
    with pytest.raises(ValueError, match="not a network"):
        parse_networks("localhost")


def received(shop: uuid.UUID, customer_id: str, event_id: uuid.UUID | None = None) -> Received[Any]:
    envelope = Envelope.wrap(
        CustomerUpserted(customer_id=customer_id, name="Dana"),
        source="intake",
        shop_id=str(shop),
        id=event_id,
    )
    return Received.of(envelope)


async def create(
    intake: Intake, shop: uuid.UUID = SHOP, url: str = "https://hooks.example/a"
) -> tuple[wh.Webhook, str]:
    return await wh.create_webhook(
        wh.CreateWebhook(shop, url, [CUSTOMER], "ours"), intake.unit_of_work(), intake.deps
    )


async def test_an_unknown_event_type_is_named() -> None:
    intake = Intake()
    with pytest.raises(WebhookRejected) as caught:
        await wh.create_webhook(
            wh.CreateWebhook(SHOP, "https://hooks.example/a", [CUSTOMER, "regulars.nope.v1"]),
            intake.unit_of_work(),
            intake.deps,
        )
    assert caught.value.field == "event_types[1]" and "regulars.nope.v1" in caught.value.message
    for url in ("ftp://x.example/", "https://user:pw@x.example/", "not a url"):
        with pytest.raises(WebhookRejected, match="url"):
            await create(intake, url=url)
    assert CUSTOMER in wh.offered_event_types()


async def test_the_names_a_shop_posts_events_under_choose_the_same_types() -> None:
    intake = Intake()
    made, _secret = await wh.create_webhook(
        wh.CreateWebhook(
            SHOP, "https://hooks.example/a", ["service.completed", "customer.upserted", CUSTOMER]
        ),
        intake.unit_of_work(),
        intake.deps,
    )
    assert made.event_types == ("regulars.service.completed.v1", CUSTOMER)
    with pytest.raises(WebhookRejected, match=r"'service\.complete' is not an event type"):
        await wh.create_webhook(
            wh.CreateWebhook(SHOP, "https://hooks.example/a", ["service.complete"]),
            intake.unit_of_work(),
            intake.deps,
        )


async def test_an_event_becomes_one_delivery_per_subscriber_of_its_shop_once() -> None:
    intake = Intake()
    mine, secret = await create(intake)
    assert secret.startswith("whsec_")
    await create(intake, shop=OTHER)
    event_id = uuid.uuid4()
    for _ in range(2):  # the same event twice (a redelivered record)
        await wh.on_event(received(SHOP, "c1", event_id), intake.unit_of_work(), intake.deps)
    stored = list(intake.webhooks.deliveries.values())
    assert [d.new.webhook_id for d in stored] == [mine.id]
    body = stored[0].new.body
    assert body["specversion"] == "1.0" and body["id"] == str(event_id)
    assert body["type"] == CUSTOMER and body["data"]["customer_id"] == "c1"


async def test_a_try_is_claimed_once_and_signed_with_both_secrets_after_rotation() -> None:
    intake = Intake()
    made, old = await create(intake)
    new = await wh.rotate_secret(wh.RotateSecret(SHOP, made.id), intake.unit_of_work(), intake.deps)
    assert new is not None and new != old
    assert (
        await wh.rotate_secret(wh.RotateSecret(OTHER, made.id), intake.unit_of_work(), intake.deps)
        is None
    )
    await wh.on_event(received(SHOP, "c1"), intake.unit_of_work(), intake.deps)
    claim = wh.ClaimDeliveries(10, timedelta(seconds=60))
    first = await wh.claim_deliveries(claim, intake.unit_of_work(), intake.deps)
    again = await wh.claim_deliveries(claim, intake.unit_of_work(), intake.deps)
    assert len(first) == 1 and again == []
    assert first[0].secrets == (new, old)

    from regulars_intake.adapters.webhook_sender import signed_headers

    headers = signed_headers(first[0], '{"a":1}', datetime.now(UTC))
    for secret in (old, new):
        assert Verifier(secret).verify('{"a":1}', headers) == {"a": 1}
    intake.clock.advance(timedelta(hours=25))
    await wh.replay_deliveries(
        wh.ReplayDeliveries(SHOP, made.id), intake.unit_of_work(), intake.deps
    )
    later = await wh.claim_deliveries(claim, intake.unit_of_work(), intake.deps)
    assert later[0].secrets == (new,)


async def test_retries_then_delivered_and_a_lost_lease_records_nothing() -> None:
    intake = Intake()
    deps = wh.Deps(clock=intake.clock, webhook_retry_schedule=SCHEDULE)
    await create(intake)
    await wh.on_event(received(SHOP, "c1"), intake.unit_of_work(), deps)
    claim = wh.ClaimDeliveries(10, timedelta(seconds=60))
    for code in (500, 503, 429):
        [held] = await wh.claim_deliveries(claim, intake.unit_of_work(), deps)
        await wh.record_answer(wh.RecordAnswer(held, Answer(code)), intake.unit_of_work(), deps)
        assert await wh.claim_deliveries(claim, intake.unit_of_work(), deps) == []
        intake.clock.advance(timedelta(seconds=2))
    [held] = await wh.claim_deliveries(claim, intake.unit_of_work(), deps)
    assert held.attempts == 4
    # the lease ran out and another replica took the try: the first holder's answer is void
    intake.clock.advance(timedelta(seconds=61))
    [taken] = await wh.claim_deliveries(claim, intake.unit_of_work(), deps)
    await wh.record_answer(wh.RecordAnswer(held, Answer(200)), intake.unit_of_work(), deps)
    [stored] = intake.webhooks.deliveries.values()
    assert stored.status == "pending"
    await wh.record_answer(wh.RecordAnswer(taken, Answer(200)), intake.unit_of_work(), deps)
    assert stored.status == "delivered" and stored.attempts == 5


async def test_410_disables_at_once_and_names_the_owners() -> None:
    intake = Intake()
    owner = {"id": "o", "name": "Olga", "role": "owner", "email": "olga@x.example"}
    policy = Policy.model_validate({**Policy.defaults().model_dump(mode="json"), "staff": [owner]})
    intake.shops.policies[SHOP] = ShopPolicy(1, policy)
    made, _secret = await create(intake)
    await wh.on_event(received(SHOP, "c1"), intake.unit_of_work(), intake.deps)
    [held] = await wh.claim_deliveries(
        wh.ClaimDeliveries(10, timedelta(seconds=60)), intake.unit_of_work(), intake.deps
    )
    notice = await wh.record_answer(
        wh.RecordAnswer(held, Answer(410)), intake.unit_of_work(), intake.deps
    )
    assert notice is not None and notice.emails == ("olga@x.example",)
    found = await intake.webhooks.get(SHOP, made.id)
    assert found is not None and not found.enabled and "410" in (found.disabled_reason or "")
    await wh.on_event(received(SHOP, "c2"), intake.unit_of_work(), intake.deps)
    assert len(intake.webhooks.deliveries) == 1


async def test_updates_and_deletes_stay_in_their_shop() -> None:
    intake = Intake()
    made, _secret = await create(intake)
    uow = intake.unit_of_work()
    assert (
        await wh.update_webhook(
            wh.UpdateWebhook(OTHER, made.id, {"enabled": False}), uow, intake.deps
        )
        is None
    )
    paused = await wh.update_webhook(
        wh.UpdateWebhook(SHOP, made.id, {"enabled": False, "description": "paused"}),
        uow,
        intake.deps,
    )
    assert paused is not None and not paused.enabled and paused.description == "paused"
    with pytest.raises(WebhookRejected, match="event_types"):
        await wh.update_webhook(
            wh.UpdateWebhook(SHOP, made.id, {"event_types": ["x"]}), uow, intake.deps
        )
    assert not await wh.delete_webhook(wh.DeleteWebhook(OTHER, made.id), uow, intake.deps)
    assert await wh.delete_webhook(wh.DeleteWebhook(SHOP, made.id), uow, intake.deps)
