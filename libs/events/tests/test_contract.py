"""The checked-in contract (JSON Schemas, AsyncAPI) matches the models, and is well formed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from regulars_events import consumers, contract
from regulars_events.base import EVENT_TYPES, Event
from regulars_events.catalogue import SHOP_EVENTS
from regulars_events.topics import all_topics, topic_for

CUSTOMER_HEADERS = {
    "ce_specversion",
    "ce_id",
    "ce_type",
    "ce_source",
    "ce_time",
    "ce_subject",
    "ce_shopid",
    "ce_correlationid",
    "ce_causationid",
    "ce_traceparent",
    "shop_id",
    "correlation_id",
    "causation_id",
    "traceparent",
    "content-type",
}


def test_checked_in_files_equal_the_generated_ones() -> None:
    assert contract.problems() == [], (
        "the event contract is stale: run `python -m regulars_events.contract`"
    )
    for rel, content in contract.expected_files().items():
        assert (contract.ROOT / rel).read_text(encoding="utf-8") == content


def test_check_command_exits_zero_on_the_checked_in_files() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "regulars_events.contract", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def copy_of_contract(tmp_path: Path) -> Path:
    """The checked-in files, copied, so tests can damage them without touching the repo."""
    shutil.copytree(contract.ROOT / contract.SCHEMAS_DIR, tmp_path / contract.SCHEMAS_DIR)
    shutil.copy(contract.ROOT / contract.ASYNCAPI_FILE, tmp_path / contract.ASYNCAPI_FILE)
    assert contract.problems(tmp_path) == []
    return tmp_path


def test_check_fails_when_a_model_is_added_without_regenerating(copy_of_contract: Path) -> None:
    event_type = "regulars.followup.test_only_added.v1"
    try:

        class TestOnlyAdded(Event):  # registers itself, like a new catalogue entry
            type = event_type
            customer_id: str

        assert contract.problems(copy_of_contract) == [
            f"missing: schemas/{event_type}.json",
            "stale: asyncapi.yaml",
        ]
        assert contract.main(["--check", "--root", str(copy_of_contract)]) == 1
    finally:
        EVENT_TYPES.pop(event_type, None)
    assert contract.problems(copy_of_contract) == []


def test_check_fails_when_a_model_changes_without_regenerating(copy_of_contract: Path) -> None:
    # What a changed model looks like on disk: its checked-in schema no longer matches.
    path = copy_of_contract / "schemas" / "regulars.service.completed.v1.json"
    path.write_text(path.read_text().replace('"mileage"', '"odometer"'))
    (copy_of_contract / "schemas" / "regulars.service.archived.v1.json").write_text("{}\n")
    (copy_of_contract / "schemas" / "regulars.invoice.paid.v1.json").unlink()

    assert contract.problems(copy_of_contract) == [
        "missing: schemas/regulars.invoice.paid.v1.json",
        "stale: schemas/regulars.service.completed.v1.json",
        "extra: schemas/regulars.service.archived.v1.json",
    ]
    assert contract.main(["--check", "--root", str(copy_of_contract)]) == 1

    # regenerating repairs all three
    assert contract.main(["--root", str(copy_of_contract)]) == 0
    assert contract.problems(copy_of_contract) == []
    assert contract.main(["--check", "--root", str(copy_of_contract)]) == 0


def test_generation_is_deterministic() -> None:
    assert contract.expected_files() == contract.expected_files()
    assert list(contract.json_schemas()) == sorted(EVENT_TYPES)


def test_every_event_type_maps_to_a_topic() -> None:
    topics = set(all_topics())
    for event_type in EVENT_TYPES:
        assert topic_for(event_type) in topics, event_type


def test_every_shop_event_maps_to_the_kafka_event_of_the_same_name() -> None:
    for short_name, cls in SHOP_EVENTS.items():
        assert cls.type == f"regulars.{short_name}.v1"
        assert cls.type.endswith(f".{short_name}.v1")


def test_json_schemas_have_an_id_and_the_class_name_as_title() -> None:
    schemas = contract.json_schemas()
    assert set(schemas) == set(EVENT_TYPES)
    for event_type, schema in schemas.items():
        assert schema["$id"] == f"https://regulars.dev/schemas/{event_type}.json"
        assert schema["title"] == EVENT_TYPES[event_type].__name__
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is True  # unknown fields are kept


def test_asyncapi_document() -> None:
    doc = contract.asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "Regulars events"
    assert doc["defaultContentType"] == "application/json"

    topics_with_events = {topic_for(t) for t in EVENT_TYPES}
    dead_letters = set(consumers.dead_letter_topics().values())
    addresses = {ch["address"] for ch in doc["channels"].values()}
    assert addresses == topics_with_events | dead_letters
    assert addresses - dead_letters <= set(all_topics())

    messages = doc["components"]["messages"]
    schemas = doc["components"]["schemas"]
    assert {m["name"] for m in messages.values()} == {*EVENT_TYPES, "dead_letter"}
    for channel_id, channel in doc["channels"].items():
        if channel["address"] in dead_letters:
            continue
        for ref in channel["messages"].values():
            name = ref["$ref"].removeprefix("#/components/messages/")
            message = messages[name]
            assert topic_for(message["name"]) == channel["address"]
            assert message["contentType"] == "application/json"
            assert message["payload"] == {"$ref": f"#/components/schemas/{name}"}
            assert name in schemas
            assert message["bindings"]["kafka"]["key"]["type"] == "string"
        sends = [
            op
            for op in doc["operations"].values()
            if op["channel"] == {"$ref": f"#/channels/{channel_id}"} and op["action"] == "send"
        ]
        assert len(sends) == 1 and sends[0]["action"] == "send"
        assert len(sends[0]["messages"]) == len(channel["messages"])

    headers = schemas["CloudEventsHeaders"]
    assert set(headers["properties"]) == CUSTOMER_HEADERS
    assert headers["properties"]["ce_specversion"]["const"] == "1.0"
    assert headers["properties"]["ce_id"]["format"] == "uuid"


def test_asyncapi_refs_all_resolve() -> None:
    doc = contract.asyncapi()

    def resolve(ref: str) -> object:
        node: object = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict), ref
            node = node[part]
        return node

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                assert resolve(node["$ref"]) is not None
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)


def test_asyncapi_yaml_loads_back_to_the_document() -> None:
    text = (contract.ROOT / contract.ASYNCAPI_FILE).read_text(encoding="utf-8")
    assert yaml.safe_load(text) == contract.asyncapi()


def test_asyncapi_names_the_production_and_the_embedded_servers() -> None:
    doc = contract.asyncapi()
    servers = doc["servers"]
    assert set(servers) == {"production", "embedded"}
    assert servers["production"]["protocol"] == "kafka-secure"
    schemes = doc["components"]["securitySchemes"]
    named = [r["$ref"].rsplit("/", 1)[1] for r in servers["production"]["security"]]
    assert {schemes[n]["type"] for n in named} == {"scramSha512", "plain", "X509"}
    assert servers["embedded"]["protocol"] == "kafka" and "security" not in servers["embedded"]


def test_each_service_receives_what_it_consumes_in_its_own_group() -> None:
    doc = contract.asyncapi()
    receives: dict[str, set[str]] = {}
    for op in doc["operations"].values():
        if op["action"] != "receive":
            continue
        [group] = op["bindings"]["kafka"]["groupId"]["enum"]
        channel = doc["channels"][op["channel"]["$ref"].removeprefix("#/channels/")]
        receives.setdefault(group, set()).add(channel["address"])
    with_events = {topic_for(t) for t in EVENT_TYPES}
    assert receives == {
        consumers.consumer_group(s): set(consumers.consumed_topics(s)) & with_events
        for s in consumers.SERVICES
    }


def test_every_service_has_a_dead_letter_channel_it_sends_to() -> None:
    doc = contract.asyncapi()
    for service, topic in consumers.dead_letter_topics().items():
        channel = doc["channels"][topic]
        assert channel["address"] == topic
        [ref] = channel["messages"].values()
        message = doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
        headers = doc["components"]["schemas"][message["headers"]["$ref"].rsplit("/", 1)[1]]
        assert {"dlq_error", "dlq_original_topic", "dlq_consumer"} <= set(headers["required"])
        sends = [
            op
            for op in doc["operations"].values()
            if op["channel"] == {"$ref": f"#/channels/{topic}"} and op["action"] == "send"
        ]
        assert len(sends) == 1, service
