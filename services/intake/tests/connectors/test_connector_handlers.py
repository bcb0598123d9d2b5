from __future__ import annotations

from datetime import UTC, datetime

import pytest
from regulars_intake import handlers
from regulars_intake.domain.connectors import Choices, tekmetric
from regulars_intake.domain.connectors.common import cents, text, when
from regulars_intake.domain.connectors.setup import ConnectorSetup, Tally
from regulars_intake.handlers import AcceptDelivery, ConfigureConnector, CreateShop

from services.intake.tests.connectors.support import body, delivery, payload, postings
from services.intake.tests.fakes import Intake


class Sealer:
    def seal(self, secret: str) -> bytes:
        return b"sealed:" + secret[::-1].encode()


def test_times_money_and_ids_as_the_systems_write_them() -> None:
    assert when("0001-01-01T00:00:00", "UTC") is None
    assert when("1970-01-01T00:00:00Z", "UTC") is None
    assert when("", "UTC") is None and when("not a time", "UTC") is None
    local = when("2026-07-01T09:00:00", "America/New_York")
    assert local is not None and local.utcoffset() is not None
    assert local.astimezone(UTC) == datetime(2026, 7, 1, 13, 0, tzinfo=UTC)
    assert when("2026-07-01T09:00:00Z", "America/New_York") == datetime(
        2026, 7, 1, 9, 0, tzinfo=UTC
    )
    assert cents(412.35, "dollars") == 41235 and cents("1,204.10", "dollars") == 120410
    assert cents(62469, "cents") == 62469 and cents(None, "cents") is None
    assert text(0) is None and text(2177) == "2177" and text("  ") is None


def test_a_connector_setup_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="timezone"):
        ConnectorSetup.model_validate({"secret": "long enough", "timezone": "Mars/Base"})
    with pytest.raises(ValueError, match="money"):
        ConnectorSetup.model_validate({"secret": "long enough", "money": "euros"})
    setup = ConnectorSetup.model_validate({"secret": "long enough", "access_token": "t" * 20})
    assert "secret" not in setup.choices() and "access_token" not in setup.choices()


async def _shop(intake: Intake) -> handlers.NewShop:
    uow = intake.unit_of_work()
    made = await handlers.open_shop(CreateShop("Garage", "America/Chicago"), uow, intake.deps)
    await uow.flush()
    return made


async def test_configuring_again_keeps_the_connector_and_seals_the_secret() -> None:
    intake = Intake()
    deps = handlers.Deps(clock=intake.clock, sealer=Sealer())
    shop = await _shop(intake)
    setup = ConnectorSetup(secret="first-secret")
    first = await handlers.configure_connector(
        ConfigureConnector(shop.shop_id, "tekmetric", setup), intake.unit_of_work(), deps
    )
    again = await handlers.configure_connector(
        ConfigureConnector(
            shop.shop_id, "tekmetric", ConnectorSetup(secret="second-secret", money="dollars")
        ),
        intake.unit_of_work(),
        deps,
    )
    assert again.id == first.id and again.choices == {
        "money": "dollars",
        "completed_statuses": [],
        "voided_statuses": [],
    }
    sealed, token = intake.connectors.sealed[first.id]
    assert b"second-secret" not in sealed and token is None
    with pytest.raises(RuntimeError):
        await handlers.configure_connector(
            ConfigureConnector(shop.shop_id, "jobber", setup), intake.unit_of_work(), intake.deps
        )


async def test_a_delivery_is_accepted_once_and_counted() -> None:
    intake = Intake()
    shop = await _shop(intake)
    deps = handlers.Deps(clock=intake.clock, sealer=Sealer())
    connector = await handlers.configure_connector(
        ConfigureConnector(shop.shop_id, "tekmetric", ConnectorSetup(secret="s" * 10)),
        intake.unit_of_work(),
        deps,
    )
    choices = Choices(timezone="America/Chicago")

    def mapped(name: str) -> list[handlers.Posting]:
        raw = body("tekmetric", name)
        return postings(tekmetric.map_delivery(payload("tekmetric", name), choices, delivery(raw)))

    async def send(name: str) -> list[str]:
        uow = intake.unit_of_work()
        outcomes = await handlers.accept_delivery(
            AcceptDelivery(connector.id, shop.shop_id, mapped(name)), uow, deps
        )
        await uow.flush()
        return [o.status for o in outcomes]

    assert await send("customer") == ["accepted"]
    assert await send("ro_completed") == ["accepted"]
    assert await send("ro_completed") == ["duplicate"]
    # posted: the same visit, and its invoice
    assert await send("ro_posted") == ["duplicate", "accepted"]
    assert len(intake.emitted("regulars.service.completed.v1")) == 1
    assert len(intake.emitted("regulars.invoice.issued.v1")) == 1
    # a later update with another total: the visit already taken is the one truth (409 in
    # intake's terms, counted as accepted, not as the shop system's mistake)
    changed = payload("tekmetric", "ro_completed")
    changed["data"]["totalSales"] = 70000
    uow = intake.unit_of_work()
    (outcome,) = await handlers.accept_delivery(
        AcceptDelivery(
            connector.id,
            shop.shop_id,
            postings(tekmetric.map_delivery(changed, choices, delivery(b"{}"))),
        ),
        uow,
        deps,
    )
    await uow.flush()
    assert outcome.rejection is not None and outcome.rejection.status == 409
    assert len(intake.emitted("regulars.service.completed.v1")) == 1
    assert intake.connectors.tallies[connector.id] == Tally(accepted=6, rejected=0)
    assert await send("payment") == ["accepted"]
    assert await send("ro_deleted") == ["accepted"]
    assert len(intake.emitted("regulars.service.voided.v1")) == 1
