"""Every service's OpenAPI document says what the service really answers.

FastAPI documents the success answers from each route's response model; this adds,
once for every service: the problem-details schema on every error answer, the errors
each operation can really give (401 where a key is needed, 413 where a body is taken,
422 for bad parameters, 429 where a rate applies), the bearer security scheme, and
nested ``$defs`` lifted into ``components`` so that every ``$ref`` resolves.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from .http import PROBLEM_JSON, ProblemDetails

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
#: what an endpoint marked public declares (OpenAPI: an empty requirement list)
PUBLIC: dict[str, Any] = {"security": []}

_ERRORS = {
    "400": "The body is not what this endpoint reads (malformed JSON or form)",
    "401": "Missing or invalid credentials (WWW-Authenticate: Bearer)",
    "404": "No such thing in this shop",
    "409": "Conflicts with what is already recorded",
    "413": "The request body is over this endpoint's limit",
    "415": "The body is in a media type this endpoint does not read",
    "422": "A field or parameter is invalid (each named in errors)",
    "429": "Over a rate limit, named in limit (Retry-After says when to try again)",
    "500": "An internal error (logged)",
}


class Health(BaseModel):
    status: str
    service: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


def install(app: FastAPI) -> None:
    generate = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        app.openapi_schema = conventions(generate())
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]


def conventions(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in problem.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas["ProblemDetails"] = problem
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "The shop's API key (rk_...), or a signed staff token",
        }
    }
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method not in ("get", "put", "post", "patch", "delete"):
                continue
            _operation(path, method, operation)
    _lift_defs(doc, schemas)
    # What RequestGuard refuses, the document says: no text anywhere holds a NUL.
    for schema in schemas.values():
        _no_nul(schema)
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                _no_nul(parameter.get("schema"))
            for media in operation.get("requestBody", {}).get("content", {}).values():
                _no_nul(media.get("schema"))
    return doc


#: JSON Schema (ECMA-262 and Python regexes alike): a string without a NUL
NO_NUL = "^[^\\u0000]*$"
_SUBSCHEMAS = ("items", "additionalProperties", "not")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def _no_nul(schema: Any) -> None:
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    is_text = kind == "string" or (isinstance(kind, list) and "string" in kind)
    if is_text and not {"pattern", "format", "enum", "const"} & schema.keys():
        schema["pattern"] = NO_NUL
    for key in _SUBSCHEMAS:
        _no_nul(schema.get(key))
    for key in _SCHEMA_LISTS:
        for sub in schema.get(key) or ():
            _no_nul(sub)
    for sub in (schema.get("properties") or {}).values():
        _no_nul(sub)


def _operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    secured = path.startswith("/v1/") and "security" not in operation
    if secured:
        operation["security"] = [{"bearer": []}]
    wanted = {"500"}
    if "operations" not in operation.get("tags", ()):
        # every endpoint has a rate: the shop's, or for a public one its caller's address
        wanted.add("429")
    if operation.get("security"):
        wanted.add("401")
    parameters = operation.get("parameters") or []
    if parameters or "requestBody" in operation:
        wanted.add("422")
    if any(p.get("in") == "path" for p in parameters):
        wanted.add("404")  # a path names a thing, and it may not be there (or not this shop's)
    if "requestBody" in operation or method in ("post", "put", "patch"):
        wanted.update({"413"})
    # Declared by the route (responses={409: {}}): keep them, with the problem schema.
    wanted.update(code for code in responses if code[0] in "45")
    # A page (a customer's survey or unsubscribe link) answers its own errors as a page.
    page = any("text/html" in (answer.get("content") or {}) for answer in responses.values())
    for code in sorted(wanted):
        answer = responses.setdefault(code, {})
        answer.setdefault("description", _ERRORS.get(code, "An error"))
        content = answer.setdefault("content", {})
        content.pop("application/json", None)
        content[PROBLEM_JSON] = {"schema": PROBLEM_REF}
        if page and code in ("404", "422"):
            content["text/html"] = {"schema": {"type": "string"}}
    for code, answer in responses.items():
        answer.setdefault("description", "OK" if code.startswith("2") else "An answer")


def _lift_defs(node: Any, schemas: dict[str, Any]) -> None:
    """Move every nested ``$defs`` into components and point its ``$ref``s there."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if isinstance(defs, dict):
            for name, schema in defs.items():
                schemas.setdefault(name, schema)
                _lift_defs(schema, schemas)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in list(node.values()):
            _lift_defs(value, schemas)
    elif isinstance(node, list):
        for value in node:
            _lift_defs(value, schemas)
