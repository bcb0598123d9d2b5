"""Every service answers as its OpenAPI document says: schemathesis, every phase and check.

schemathesis (a well-kept property-based fuzzer for OpenAPI) reads each service's
``/openapi.json`` and sends what the document allows and what it does not: examples,
boundary values (coverage), random fuzzing and stateful sequences. A run fails on any 5xx,
any status, content type, header or body the document does not declare, a request without
the key that is not 401, and schema-invalid data that is accepted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import System

CONFIG = Path(__file__).with_name("schemathesis.toml")
#: cases per operation and phase: enough to reach every branch of the guards, short enough
#: for `make test` (about 30 s per service here)
EXAMPLES = 40
SEED = 20261202


@pytest.fixture(scope="module")
async def key(system: System) -> str:
    for name in ("intake", "followup", "feedback", "loyalty"):
        if name not in system.services or system.services[name].proc is None:
            system.start(name)
    _shop, api_key = await system.create_shop("Conformance Motors")
    return api_key


@pytest.mark.parametrize("service", ["intake", "followup", "feedback", "loyalty"])
def test_every_answer_is_the_documented_one(system: System, key: str, service: str) -> None:
    url = system.services[service].url
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "--no-color",
            "--config-file",
            str(CONFIG),
            "run",
            f"{url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--checks",
            "all",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            str(SEED),
            # one worker: two raced inside hypothesis' own lambda descriptions (a runtime
            # error of the tool, not an answer of ours)
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--output-truncate",
            "false",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = run.stdout[-20000:] + run.stderr[-5000:]
    assert run.returncode == 0, report
    assert "No issues found" in run.stdout or " passed" in run.stdout, report


@pytest.mark.parametrize("service", ["intake", "followup", "feedback", "loyalty"])
def test_every_answer_has_a_schema_and_every_ref_resolves(
    system: System, key: str, service: str
) -> None:
    doc = httpx.get(f"{system.services[service].url}/openapi.json", timeout=10).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            for code, answer in operation["responses"].items():
                content = answer.get("content")
                assert content, f"{where} {code}: no content declared"
                for media, body in content.items():
                    assert body.get("schema"), f"{where} {code} {media}: no schema"
                if code[0] in "45":
                    assert "application/problem+json" in content, f"{where} {code}"
            if path.startswith("/v1/") and operation.get("security") != []:
                assert "401" in operation["responses"], f"{where}: no 401"

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, f"{ref} resolves nowhere"
            target = target[part]


def test_intake_refuses_a_nul_in_the_query_of_its_fast_path(system: System, key: str) -> None:
    # POST /v1/events is answered in front of the framework (for speed): the same text
    # checks hold there as on every other endpoint.
    r = httpx.post(
        f"{system.services['intake'].url}/v1/events?source=a%00b",
        headers={"Authorization": f"Bearer {key}"},
        json={"type": "customer.upserted"},
        timeout=10,
    )
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"] == [{"field": "source", "message": "NUL character"}]
