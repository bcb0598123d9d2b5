"""The envelope in Kafka binary mode as a CloudEvents SDK reads it, and as older
consumers do: the extension attributes under their ``ce_`` names, and the same values
under the names read before them."""

from __future__ import annotations

import uuid

import pytest
from cloudevents.kafka import KafkaMessage, from_binary
from regulars_events.catalogue import CustomerReplied
from regulars_events.envelope import LEGACY_HEADERS, Envelope, EnvelopeError


def _envelope() -> Envelope:
    first = Envelope.wrap(
        CustomerReplied(customer_id="c-1", channel="sms", text="yes"),
        source="intake",
        shop_id=str(uuid.uuid4()),
    )
    return Envelope.wrap(
        CustomerReplied(customer_id="c-1", channel="sms", text="thanks"),
        source="followup",
        shop_id=first.shop_id,
        cause=first,
    )


def test_the_sdk_sees_shop_correlation_causation_and_trace_as_extensions() -> None:
    e = _envelope()
    event = from_binary(KafkaMessage(headers=dict(e.headers), key=e.key, value=e.value))
    assert event["id"] == str(e.id) and event["type"] == e.type and event["source"] == e.source
    assert event["shopid"] == e.shop_id
    assert event["correlationid"] == e.correlation_id
    assert event["causationid"] == e.causation_id
    assert event["traceparent"] == e.traceparent
    assert event.data == e.data
    # the names consumers read before stay, beside the extensions
    headers = dict(e.headers)
    for extension, legacy in LEGACY_HEADERS.items():
        assert headers[extension] == headers[legacy], extension


def test_an_event_with_no_cause_has_no_causation_extension() -> None:
    e = Envelope.wrap(
        CustomerReplied(customer_id="c-2", channel="sms", text="hi"),
        source="intake",
        shop_id=str(uuid.uuid4()),
    )
    event = from_binary(KafkaMessage(headers=dict(e.headers), key=e.key, value=e.value))
    assert "causationid" not in event.get_attributes()
    assert event["correlationid"] == str(e.id)


@pytest.mark.parametrize("drop", ["extensions", "legacy"])
def test_a_record_with_either_set_of_names_is_read(drop: str) -> None:
    e = _envelope()
    names = set(LEGACY_HEADERS) if drop == "extensions" else set(LEGACY_HEADERS.values())
    headers = [(k, v) for k, v in e.headers if k not in names]
    back = Envelope.from_kafka(headers, e.value)
    assert back == e


def test_a_record_without_a_shop_is_refused() -> None:
    e = _envelope()
    headers = [(k, v) for k, v in e.headers if k not in ("ce_shopid", "shop_id")]
    with pytest.raises(EnvelopeError, match="ce_shopid"):
        Envelope.from_kafka(headers, e.value)
