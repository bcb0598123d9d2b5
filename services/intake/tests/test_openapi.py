"""intake's OpenAPI document, built without starting the app: every answer has a schema,
every reference resolves, and the policy's body is the policy model's own schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from regulars_events.catalogue import SHOP_EVENTS
from regulars_intake.bootstrap import DEFINITION, IntakeSettings
from regulars_runtime.openapi import NO_NUL
from regulars_runtime.service import create_app
from regulars_shop.policy import Policy

COMPONENTS = "#/components/schemas/"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(DEFINITION, IntakeSettings(database_url="postgresql://x", embedded=True))
    return app.openapi()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    refs = list(_refs(document))
    assert refs, "the document references its components"
    assert [r for r in refs if not r.startswith(COMPONENTS)] == []
    assert [r for r in refs if r.removeprefix(COMPONENTS) not in schemas] == []
    assert "$defs" not in repr(document)


def test_every_success_answer_of_the_api_has_a_schema(document: dict[str, Any]) -> None:
    answers = {
        (path, method, code): answer
        for path, method, operation in _operations(document)
        if path.startswith("/v1/")
        for code, answer in operation["responses"].items()
        if code.startswith("2")
    }
    assert set(answers) == {
        ("/v1/events", "post", "202"),
        ("/v1/events/batch", "post", "202"),
        ("/v1/policy", "get", "200"),
        ("/v1/policy", "put", "200"),
        ("/v1/customers/{customer_id}", "get", "200"),
        ("/v1/webhooks", "post", "201"),
        ("/v1/webhooks", "get", "200"),
        ("/v1/webhooks/event-types", "get", "200"),
        ("/v1/webhooks/{webhook_id}", "get", "200"),
        ("/v1/webhooks/{webhook_id}", "patch", "200"),
        ("/v1/webhooks/{webhook_id}", "delete", "200"),
        ("/v1/webhooks/{webhook_id}/rotate-secret", "post", "200"),
        ("/v1/webhooks/{webhook_id}/deliveries", "get", "200"),
        ("/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", "post", "202"),
        ("/v1/webhooks/{webhook_id}/replay", "post", "202"),
        ("/v1/waiting", "get", "200"),
        ("/v1/connectors/{system}", "put", "200"),
        ("/v1/connectors", "get", "200"),
    }
    for where, answer in answers.items():
        schema = answer["content"]["application/json"]["schema"]
        assert schema.get("$ref", "").startswith(COMPONENTS), where
    schemas = document["components"]["schemas"]
    assert set(schemas["PostingResult"]["properties"]) >= {"status", "id", "event_id"}
    assert schemas["PolicyAnswer"]["properties"]["policy"] == {"$ref": COMPONENTS + "Policy"}


def _without_nul_rule(node: Any) -> Any:
    """The schema as the model wrote it: the platform adds to every text that it holds no
    NUL (what RequestGuard refuses)."""
    if isinstance(node, dict):
        return {
            k: _without_nul_rule(v) for k, v in node.items() if not (k == "pattern" and v == NO_NUL)
        }
    if isinstance(node, list):
        return [_without_nul_rule(v) for v in node]
    return node


def test_the_policy_body_is_the_policy_models_schema(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/policy"]["put"]["requestBody"]["content"]["application/json"]
    expected = Policy.model_json_schema(ref_template=COMPONENTS + "{model}")
    nested = expected.pop("$defs")
    assert _without_nul_rule(body["schema"]) == expected
    schemas = document["components"]["schemas"]
    for name, schema in nested.items():
        assert _without_nul_rule(schemas[name]) == schema, name


def test_an_events_type_is_one_of_the_shop_events(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].removeprefix(COMPONENTS)]
    types = schema["properties"]["type"]["enum"]
    assert types == list(SHOP_EVENTS)
    assert {"invoice.issued", "invoice.paid", "invoice.overdue"} <= set(types)


def test_the_policy_documents_the_at_risk_threshold(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["Policy"]["properties"]["at_risk_threshold"]
    assert (schema["minimum"], schema["maximum"], schema["default"]) == (0, 1, 0.6)
    assert "churn-risk" in schema["description"]
