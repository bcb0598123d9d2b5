"""intake's handlers at the unit-of-work seam: what a shop's system gets back, what is
stored and which events go out, with every repository in memory."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from regulars_intake import bootstrap, handlers, jobber_handlers, webhook_handlers
from regulars_intake.domain.acceptance import Arrival, Needs, runs
from regulars_intake.domain.postings import Posting, parse_posting
from regulars_intake.domain.repair_orders import VisitStatus
from regulars_intake.domain.shop import (
    MAX_ACTIVE_KEYS,
    KeyInUse,
    LastActiveKey,
    PolicyVersion,
    TooManyKeys,
    UnknownKey,
)
from regulars_intake.handlers import (
    AcceptPostings,
    ChangePolicy,
    CreateShop,
    IssueApiKey,
    ListShops,
    NoteKeyUse,
    Outcome,
    RevokeApiKey,
)
from regulars_shop.policy import Policy

from services.intake.tests.fakes import Intake, StoredShop

SHOP = uuid.UUID("00000000-0000-4000-8000-00000000beef")
COMPLETED = "regulars.service.completed.v1"


def customer(cid: str, client_id: str | None = None, **extra: Any) -> Posting:
    return parse_posting(
        {
            "type": "customer.upserted",
            "id": client_id or f"cust-{cid}",
            "occurred_at": "2026-11-20T10:00:00-05:00",
            "data": {"customer_id": cid, "name": "Dana Whitfield", **extra},
        }
    )


def visit(ro: str, cid: str, client_id: str | None = "", **extra: Any) -> Posting:
    raw: dict[str, Any] = {
        "type": "service.completed",
        "occurred_at": "2026-11-20T16:30:00-05:00",
        "data": {
            "repair_order_id": ro,
            "customer_id": cid,
            "completed_at": "2026-11-20T16:30:00-05:00",
            **extra,
        },
    }
    if client_id is not None:
        raw["id"] = client_id or f"ro-{ro}"
    return parse_posting(raw)


def order_event(kind: str, ro: str, client_id: str | None = None) -> Posting:
    raw: dict[str, Any] = {
        "type": kind,
        "occurred_at": "2026-11-21T09:00:00-05:00",
        "data": {"repair_order_id": ro},
    }
    if client_id is not None:
        raw["id"] = client_id
    return parse_posting(raw)


async def accept(intake: Intake, *postings: Posting) -> list[Outcome]:
    """The postings in one committed unit of work, as POST /v1/events/batch does."""
    uow = intake.unit_of_work()
    outcomes = await handlers.accept_postings(
        AcceptPostings([(SHOP, p) for p in postings]), uow, intake.deps
    )
    await uow.flush()
    return outcomes


async def accept_one(intake: Intake, posting: Posting) -> Outcome:
    uow = intake.unit_of_work()
    outcome = await handlers.accept(uow, SHOP, posting)
    await uow.flush()
    return outcome


async def with_customer(cid: str = "c-1") -> Intake:
    intake = Intake()
    assert [o.status for o in await accept(intake, customer(cid))] == ["accepted"]
    intake.outbox.clear()
    return intake


# -- accepting postings -----------------------------------------------------------------


async def test_a_new_visit_is_accepted_stored_and_emitted_once() -> None:
    intake = await with_customer()
    (outcome,) = await accept(intake, visit("ro-1", "c-1"))
    assert outcome.status == "accepted" and outcome.client_id == "ro-ro-1"
    [envelope] = intake.outbox
    assert envelope.type == COMPLETED
    assert envelope.id == outcome.event_id
    assert envelope.subject == "c-1" and envelope.shop_id == str(SHOP)
    assert intake.repair_orders.orders[(SHOP, "ro-1")].status is VisitStatus.COMPLETED
    assert (SHOP, "ro-ro-1") in intake.receipts.receipts


async def test_the_same_id_and_body_again_is_a_duplicate_of_the_same_event() -> None:
    intake = await with_customer()
    (first,) = await accept(intake, visit("ro-1", "c-1"))
    (again,) = await accept(intake, visit("ro-1", "c-1"))
    assert again.status == "duplicate"
    assert again.event_id == first.event_id
    assert [e.id for e in intake.outbox] == [first.event_id]


async def test_the_same_id_with_another_body_is_a_409_naming_the_id() -> None:
    intake = await with_customer()
    (first,) = await accept(intake, visit("ro-1", "c-1"))
    (other,) = await accept(intake, visit("ro-1", "c-1", advisor="kim"))
    assert other.status == "rejected" and other.rejection is not None
    assert other.rejection.status == 409
    assert [e.field for e in other.rejection.errors] == ["id"]
    assert other.event_id == first.event_id
    assert len(intake.outbox) == 1


@pytest.mark.parametrize("client_id", ["ro-ro-9", None])
async def test_a_visit_for_an_unknown_customer_is_accepted_and_held(
    client_id: str | None,
) -> None:
    intake = await with_customer()
    (outcome,) = await accept(intake, visit("ro-9", "c-nobody", client_id=client_id))
    assert outcome.status == "accepted" and outcome.rejection is None
    assert intake.outbox == []
    assert (SHOP, "ro-9") not in intake.repair_orders.orders
    assert intake.waiting.waiting_for(SHOP) == [Needs(SHOP, "customer", "c-nobody")]


async def test_a_referral_waits_for_its_referrer() -> None:
    intake = await with_customer()
    referral = parse_posting(
        {
            "type": "referral.reported",
            "id": "ref-1",
            "occurred_at": "2026-11-20T10:00:00Z",
            "data": {"referrer_customer_id": "c-nobody", "referred_customer_id": "c-1"},
        }
    )
    (outcome,) = await accept(intake, referral)
    assert outcome.status == "accepted"
    assert intake.waiting.waiting_for(SHOP) == [Needs(SHOP, "customer", "c-nobody")]


def invoice(kind: str, cid: str, client_id: str) -> Posting:
    return parse_posting(
        {
            "type": kind,
            "id": client_id,
            "occurred_at": "2026-11-20T17:00:00-05:00",
            "data": {
                "invoice_id": "inv-1",
                "customer_id": cid,
                "amount_cents": 18_950,
                "due_at": "2026-12-20T00:00:00-05:00",
            },
        }
    )


async def test_an_issued_invoice_is_accepted_and_emitted_as_a_paid_one_is() -> None:
    intake = await with_customer()
    issued, paid = await accept(
        intake,
        invoice("invoice.issued", "c-1", "inv-1-issued"),
        invoice("invoice.paid", "c-1", "inv-1-paid"),
    )
    assert (issued.status, paid.status) == ("accepted", "accepted")
    assert [(e.type, e.id, e.subject) for e in intake.outbox] == [
        ("regulars.invoice.issued.v1", issued.event_id, "c-1"),
        ("regulars.invoice.paid.v1", paid.event_id, "c-1"),
    ]
    assert intake.outbox[0].data["amount_cents"] == 18_950
    (again,) = await accept(intake, invoice("invoice.issued", "c-1", "inv-1-issued"))
    assert (again.status, again.event_id) == ("duplicate", issued.event_id)


async def test_a_void_reaches_its_visits_customer_and_a_void_is_final() -> None:
    intake = await with_customer()
    await accept(intake, visit("ro-1", "c-1"))
    (voided,) = await accept(intake, order_event("service.voided", "ro-1", "void-1"))
    assert voided.status == "accepted"
    assert intake.outbox[-1].type == "regulars.service.voided.v1"
    assert intake.outbox[-1].subject == "c-1"  # the void names no customer; its visit does
    assert intake.repair_orders.orders[(SHOP, "ro-1")].status is VisitStatus.VOIDED
    await accept(intake, order_event("service.reopened", "ro-1", "reopen-1"))
    await accept(intake, visit("ro-1", "c-1", client_id="ro-1-again"))
    assert intake.repair_orders.orders[(SHOP, "ro-1")].status is VisitStatus.VOIDED


async def test_a_reopened_order_completes_again() -> None:
    intake = await with_customer()
    await accept(intake, visit("ro-2", "c-1"))
    await accept(intake, order_event("service.reopened", "ro-2", "reopen-2"))
    assert intake.repair_orders.orders[(SHOP, "ro-2")].status is VisitStatus.REOPENED
    await accept(intake, visit("ro-2", "c-1", client_id="ro-2-again"))
    assert intake.repair_orders.orders[(SHOP, "ro-2")].status is VisitStatus.COMPLETED


async def test_a_run_of_visits_is_claimed_and_stored_with_one_statement_each() -> None:
    intake = await with_customer()
    intake.receipts.claim_calls.clear()
    outcomes = await accept(intake, *(visit(f"ro-{i}", "c-1") for i in range(5)))
    assert [o.status for o in outcomes] == ["accepted"] * 5
    assert intake.receipts.claim_calls == [5]
    assert intake.repair_orders.add_calls == [5]
    assert len(intake.outbox) == 5


def test_runs_keep_postings_that_see_each_other_apart() -> None:
    postings = [
        visit("ro-1", "c-1"),
        visit("ro-2", "c-1"),
        visit("ro-1", "c-1", client_id="ro-1-again"),  # the same order: a new run
        customer("c-2"),  # must see what came before: alone
        visit("ro-3", "c-1", client_id=None),  # no id: alone
        visit("ro-4", "c-1"),
        visit("ro-4", "c-1"),  # the same id: a new run
    ]
    arrivals = [Arrival.of(SHOP, p) for p in postings]
    index = {id(a): i for i, a in enumerate(arrivals)}
    cut = [[index[id(a)] for a in run] for run in runs(arrivals)]
    assert cut == [[0, 1], [2], [3], [4], [5], [6]]


def _answer(outcome: Outcome) -> dict[str, Any]:
    body = outcome.as_dict()
    if outcome.client_id is None:
        body.pop("event_id", None)  # random without the shop's id
    return body


async def test_one_by_one_and_in_one_batch_give_the_same_answers() -> None:
    first = visit("ro-seq-1", "c-seq", client_id="seq-visit")
    postings = [
        visit("ro-seq-0", "c-seq"),  # the customer is not in the directory yet
        customer("c-seq", consent={"sms": True}),
        first,
        visit("ro-seq-1", "c-seq", client_id="seq-visit-again"),  # same order, new id
        first,  # the same id and body: a duplicate
        visit("ro-seq-1", "c-seq", client_id="seq-visit", advisor="kim"),  # another body
        visit("ro-seq-2", "c-nobody"),
        visit("ro-seq-3", "c-seq"),
        visit("ro-seq-4", "c-seq", client_id=None),
        order_event("service.voided", "ro-seq-3", "void-3"),
        order_event("service.voided", "ro-seq-3", "void-3"),  # a repeated void
        order_event("service.reopened", "ro-seq-3", "reopen-3"),
        order_event("service.voided", "ro-nowhere", "void-x"),
        visit("ro-seq-3", "c-seq", client_id="seq-3-again"),
        customer("c-seq", client_id="cust-c-seq-2", consent={"email": False}),
        parse_posting(
            {
                "type": "consent.changed",
                "id": "consent-1",
                "occurred_at": "2026-11-22T10:00:00Z",
                "data": {"customer_id": "c-seq", "channel": "call", "granted": True},
            }
        ),
    ]
    batched, single = Intake(), Intake()
    in_batch = await accept(batched, *postings)
    one_by_one = [await accept_one(single, p) for p in postings]

    assert [_answer(o) for o in in_batch] == [_answer(o) for o in one_by_one]
    assert [(o.status, o.rejection and o.rejection.status) for o in in_batch] == [
        ("accepted", None),  # held for its customer, let through by the next posting
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("duplicate", None),
        ("rejected", 409),
        ("accepted", None),  # held: c-nobody never arrives
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
        ("duplicate", None),
        ("accepted", None),
        ("accepted", None),  # held: ro-nowhere never arrives
        ("accepted", None),
        ("accepted", None),
        ("accepted", None),
    ]
    assert batched.repair_orders.orders == single.repair_orders.orders
    # voided, then a reopen and a completion: a void is final
    assert batched.repair_orders.orders[(SHOP, "ro-seq-3")].status is VisitStatus.VOIDED
    assert sorted(batched.waiting.waiting_for(SHOP)) == [
        Needs(SHOP, "customer", "c-nobody"),
        Needs(SHOP, "repair_order", "ro-nowhere"),
    ]
    assert batched.customers.customers == single.customers.customers
    consent = batched.customers.customers[(SHOP, "c-seq")]["consent"]
    assert consent == {"sms": True, "email": False, "call": True}
    assert [e.type for e in batched.outbox] == [e.type for e in single.outbox]
    assert [e.data for e in batched.outbox] == [e.data for e in single.outbox]
    accepted = [o.event_id for o in in_batch if o.status == "accepted"]
    still_held = {in_batch[6].event_id, in_batch[12].event_id}
    # the visit held for its customer goes out right after the customer, as it would
    # have in order; the rest in the order posted
    in_order = [accepted[1], accepted[0], *accepted[2:]]
    assert [e.id for e in batched.outbox] == [a for a in in_order if a not in still_held]
    assert len(batched.outbox) == len(accepted) - 2


# -- shops and their policy ---------------------------------------------------------------


async def test_create_shop_emits_its_policy_and_only_the_hash_of_its_key() -> None:
    intake = Intake()
    uow = intake.unit_of_work()
    created = await handlers.open_shop(CreateShop("Quick Lube", "America/Denver"), uow, intake.deps)
    await uow.flush()
    policy_changed, key_issued = intake.outbox
    assert policy_changed.type == "regulars.shop.policy_changed.v1"
    assert policy_changed.shop_id == str(created.shop_id)
    assert policy_changed.data["version"] == 1
    assert policy_changed.data["policy"]["timezone"] == "America/Denver"
    assert policy_changed.data["policy"]["contact"]["name"] == "Quick Lube"
    assert key_issued.type == "regulars.shop.api_key_issued.v1"
    secret = created.api_key.split("_", 2)[2]
    assert key_issued.data["key_id"] == created.api_key.split("_", 2)[1]
    assert key_issued.data["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr([e.data for e in intake.outbox])
    stored = intake.registry.shops[created.shop_id]
    assert stored.name == "Quick Lube"
    assert [k.secret_sha256 for k in stored.keys] == [hashlib.sha256(secret.encode()).digest()]
    shops = await handlers.list_shops(ListShops(), intake.unit_of_work(), intake.deps)
    assert [s["timezone"] for s in shops] == ["America/Denver"]


async def test_change_policy_bumps_the_version_and_emits_the_whole_policy() -> None:
    intake = Intake()
    uow = intake.unit_of_work()
    created = await handlers.open_shop(CreateShop("Quick Lube", "UTC"), uow, intake.deps)
    await uow.flush()
    intake.outbox.clear()
    policy = Policy.model_validate(
        {**Policy.defaults().model_dump(mode="json"), "follow_up_max_attempts": 4}
    )
    versions = []
    for _ in range(2):
        uow = intake.unit_of_work()
        versions.append(
            await handlers.change_policy(ChangePolicy(created.shop_id, policy), uow, intake.deps)
        )
        await uow.flush()
    assert versions == [2, 3]
    assert [e.data["version"] for e in intake.outbox] == [2, 3]
    assert intake.outbox[-1].data["policy"]["follow_up_max_attempts"] == 4
    stored = intake.registry.shops[created.shop_id].policies
    assert [p.version for p in stored] == [1, 2, 3]


async def test_a_policy_changed_at_the_console_names_who_changed_it() -> None:
    intake = Intake()
    uow = intake.unit_of_work()
    created = await handlers.open_shop(CreateShop("Quick Lube", "UTC"), uow, intake.deps)
    await uow.flush()
    intake.outbox.clear()
    for changed_by in ("owner-maria", None):
        uow = intake.unit_of_work()
        await handlers.change_policy(
            ChangePolicy(created.shop_id, Policy.defaults(), changed_by), uow, intake.deps
        )
        await uow.flush()
    assert [e.data.get("changed_by") for e in intake.outbox] == ["owner-maria", None]
    stored = intake.registry.shops[created.shop_id].policies
    assert [p.changed_by for p in stored] == [None, "owner-maria", None]


async def test_a_new_key_for_an_unknown_shop_is_refused() -> None:
    intake = Intake()
    with pytest.raises(LookupError):
        await handlers.issue_api_key(IssueApiKey(SHOP), intake.unit_of_work(), intake.deps)


def test_every_command_runs_through_the_bus() -> None:
    bus = bootstrap.bus(Intake().deps)
    assert bus.commands == {
        CreateShop: handlers.open_shop,
        ChangePolicy: handlers.change_policy,
        IssueApiKey: handlers.issue_api_key,
        RevokeApiKey: handlers.revoke_api_key,
        NoteKeyUse: handlers.note_key_use,
        AcceptPostings: handlers.accept_postings,
        ListShops: handlers.list_shops,
        webhook_handlers.CreateWebhook: webhook_handlers.create_webhook,
        webhook_handlers.UpdateWebhook: webhook_handlers.update_webhook,
        webhook_handlers.DeleteWebhook: webhook_handlers.delete_webhook,
        webhook_handlers.RotateSecret: webhook_handlers.rotate_secret,
        webhook_handlers.ReplayDeliveries: webhook_handlers.replay_deliveries,
        webhook_handlers.ClaimDeliveries: webhook_handlers.claim_deliveries,
        webhook_handlers.RecordAnswer: webhook_handlers.record_answer,
        handlers.ConfigureConnector: handlers.configure_connector,
        handlers.AcceptDelivery: handlers.accept_delivery,
        handlers.CountFailedDelivery: handlers.count_failed_delivery,
        jobber_handlers.KeepJobberEvent: jobber_handlers.keep_jobber_event,
        jobber_handlers.ClaimJobberFetches: jobber_handlers.claim_jobber_fetches,
        jobber_handlers.AcceptFetched: jobber_handlers.accept_fetched,
        jobber_handlers.FetchFailedFor: jobber_handlers.fetch_failed_for,
    }
    assert bus.every_event is webhook_handlers.on_event


# -- contact data -----------------------------------------------------------------------


async def shop_in(country: str | None) -> Intake:
    intake = Intake()
    document = Policy.defaults().model_dump(mode="json")
    if country is None:
        document.pop("country")  # a policy from before the setting
    else:
        document["country"] = country
    intake.registry.shops[SHOP] = StoredShop("Main St Auto", intake.clock())
    intake.registry.shops[SHOP].policies.append(PolicyVersion(1, document))
    return intake


@pytest.mark.parametrize(
    ("country", "phone", "extra", "e164"),
    [
        ("US", "(512) 555-0142", {}, "+15125550142"),
        (None, "512.555.0142", {}, "+15125550142"),
        ("GB", "020 7946 0958", {}, "+442079460958"),
        ("US", "020 7946 0958", {"country": "gb"}, "+442079460958"),
        ("GB", "+1 512 555 0142", {}, "+15125550142"),
    ],
)
async def test_phones_are_stored_and_emitted_in_e164(
    country: str | None, phone: str, extra: dict[str, Any], e164: str
) -> None:
    intake = await shop_in(country)
    (outcome,) = await accept(intake, customer("c-1", phone=phone, **extra))
    assert outcome.status == "accepted", outcome
    [event] = intake.emitted("regulars.customer.upserted.v1")
    assert event.data["phone"] == e164
    assert intake.customers.customers[(SHOP, "c-1")]["data"]["phone"] == e164


async def test_time_zone_and_state_are_spelled_canonically() -> None:
    intake = await shop_in("US")
    await accept(
        intake, customer("c-1", phone="5125550142", timezone="america/chicago", state="tx")
    )
    [event] = intake.emitted("regulars.customer.upserted.v1")
    assert (event.data["timezone"], event.data["state"]) == ("America/Chicago", "TX")


async def test_unusable_contact_data_is_a_422_naming_each_field_and_claims_no_id() -> None:
    intake = await shop_in("US")
    bad = customer("c-1", "cust-1", phone="555-0100", timezone="Central", state="XX")
    ok = customer("c-2", phone="(512) 555-0143")
    refused, accepted = await accept(intake, bad, ok)
    assert refused.status == "rejected" and refused.rejection is not None
    assert refused.rejection.status == 422 and refused.client_id == "cust-1"
    assert [e.field for e in refused.rejection.errors] == [
        "data.phone",
        "data.timezone",
        "data.state",
    ]
    assert accepted.status == "accepted"
    assert [e.subject for e in intake.outbox] == ["c-2"]
    # corrected, the same id is accepted: the refused one was never claimed
    (again,) = await accept(intake, customer("c-1", "cust-1", phone="(512) 555-0142"))
    assert again.status == "accepted"


# -- API keys ---------------------------------------------------------------------------


async def new_shop(intake: Intake) -> handlers.NewShop:
    uow = intake.unit_of_work()
    created = await handlers.open_shop(CreateShop("Quick Lube", "UTC"), uow, intake.deps)
    await uow.flush()
    intake.outbox.clear()
    return created


async def run(intake: Intake, command: Any, handler: Any) -> Any:
    uow = intake.unit_of_work()
    result = await handler(command, uow, intake.deps)
    await uow.flush()
    return result


async def test_a_key_is_issued_with_its_label_and_only_its_hash_travels() -> None:
    intake = Intake()
    shop = await new_shop(intake)
    issued = await run(intake, IssueApiKey(shop.shop_id, "Tekmetric"), handlers.issue_api_key)
    assert issued.api_key.startswith(f"rk_{issued.key_id}_") and issued.label == "Tekmetric"
    [event] = intake.outbox
    assert event.type == "regulars.shop.api_key_issued.v1"
    assert event.data["key_id"] == issued.key_id
    assert issued.api_key.split("_", 2)[2] not in repr(event.data)
    assert [k.label for k in intake.registry.shops[shop.shop_id].keys] == [None, "Tekmetric"]


async def test_a_revoked_key_is_told_to_every_service_once() -> None:
    intake = Intake()
    shop = await new_shop(intake)
    first = shop.api_key.split("_", 2)[1]
    await run(intake, IssueApiKey(shop.shop_id), handlers.issue_api_key)
    intake.outbox.clear()
    assert await run(intake, RevokeApiKey(shop.shop_id, first), handlers.revoke_api_key) is True
    assert [(e.type, e.data["key_id"]) for e in intake.outbox] == [
        ("regulars.shop.api_key_revoked.v1", first)
    ]
    # again: nothing changes, nothing is told
    assert await run(intake, RevokeApiKey(shop.shop_id, first), handlers.revoke_api_key) is False
    assert len(intake.outbox) == 1
    assert intake.registry.shops[shop.shop_id].revoked == {first}


async def test_the_last_key_in_use_cannot_be_revoked() -> None:
    intake = Intake()
    shop = await new_shop(intake)
    second = await run(intake, IssueApiKey(shop.shop_id), handlers.issue_api_key)
    await run(intake, RevokeApiKey(shop.shop_id, second.key_id), handlers.revoke_api_key)
    first = shop.api_key.split("_", 2)[1]
    with pytest.raises(LastActiveKey):
        await run(intake, RevokeApiKey(shop.shop_id, first), handlers.revoke_api_key)
    assert intake.registry.shops[shop.shop_id].revoked == {second.key_id}


async def test_a_request_cannot_revoke_the_key_it_is_signed_with() -> None:
    intake = Intake()
    shop = await new_shop(intake)
    first = shop.api_key.split("_", 2)[1]
    second = await run(intake, IssueApiKey(shop.shop_id), handlers.issue_api_key)
    with pytest.raises(KeyInUse):
        await run(intake, RevokeApiKey(shop.shop_id, first, first), handlers.revoke_api_key)
    revoked = RevokeApiKey(shop.shop_id, first, second.key_id)
    assert await run(intake, revoked, handlers.revoke_api_key) is True


async def test_another_shops_key_is_unknown_here() -> None:
    intake = Intake()
    mine, theirs = await new_shop(intake), await new_shop(intake)
    await run(intake, IssueApiKey(mine.shop_id), handlers.issue_api_key)
    with pytest.raises(UnknownKey):
        await run(
            intake,
            RevokeApiKey(mine.shop_id, theirs.api_key.split("_", 2)[1]),
            handlers.revoke_api_key,
        )
    assert not intake.registry.shops[theirs.shop_id].revoked


async def test_keys_in_use_are_bounded() -> None:
    intake = Intake()
    shop = await new_shop(intake)
    for _ in range(MAX_ACTIVE_KEYS - 1):
        await run(intake, IssueApiKey(shop.shop_id), handlers.issue_api_key)
    with pytest.raises(TooManyKeys):
        await run(intake, IssueApiKey(shop.shop_id), handlers.issue_api_key)


async def test_a_keys_use_is_kept_to_the_hour() -> None:
    intake = Intake()
    shop = await new_shop(intake)
    key_id = shop.api_key.split("_", 2)[1]
    await run(intake, NoteKeyUse(shop.shop_id, key_id), handlers.note_key_use)
    used = intake.registry.shops[shop.shop_id].last_used[key_id]
    assert used == intake.clock().replace(minute=0, second=0, microsecond=0)
