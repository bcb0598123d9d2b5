"""`make deploy-check`: render every kustomization with the real kustomize (kubectl's), then
validate each resource: built-in kinds with kubernetes-validate in strict mode, the Strimzi,
KEDA and Prometheus Operator kinds against Regulars' own JSON Schemas of them
(deploy/schemas, always: a fresh clone has nothing else), with unknown fields refused (the
API server would prune them silently). A kind neither knows is an error.

Where the operators' own CRDs are at hand (--crds, the Makefile's CRDS, holds the files
deploy/crds.lock names with their source and SHA-256), the custom kinds are validated
against those as well; a directory that does not exist means "not at hand", but one that
exists with a missing or changed file is an error."""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
LOCK = ROOT / "deploy" / "crds.lock"
OWN_SCHEMAS = ROOT / "deploy" / "schemas"
#: the Kubernetes release the built-in kinds are checked against
KUBERNETES = "1.33.0"


def kustomizations() -> list[Path]:
    return [K8S / "base", *sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())]


def render(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    # the kubectl the Makefile installed, on the repository's own kustomizations
    out = subprocess.run(  # noqa: S603
        [kubectl, "kustomize", str(directory)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def own_schemas(directory: Path = OWN_SCHEMAS) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> Regulars' own schema, read from each schema's const fields."""
    schemas: dict[tuple[str, str], Any] = {}
    for path in sorted(directory.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        key = (schema["properties"]["apiVersion"]["const"], schema["properties"]["kind"]["const"])
        schemas[key] = schema
    return schemas


def locked_crds(crds: Path) -> list[Path]:
    """The CRD files of deploy/crds.lock, each present with the recorded SHA-256."""
    files, problems = [], []
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digest, name, _source = line.split(maxsplit=2)
        path = crds / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{path}: not the locked version (sha256 differs)")
        files.append(path)
    if problems:
        raise SystemExit(
            f"CRDs (deploy/crds.lock) in {crds}:\n  "
            + "\n  ".join(problems)
            + "\nEach line of deploy/crds.lock names its file's source as repository@tag:path"
            " (the CRD as that release of the operator ships it); put the file there under"
            " the name the line gives, or point CRDS at a folder that has them."
        )
    return files


def closed(schema: Any) -> Any:
    """The schema with unknown fields refused wherever the CRD does not keep them."""
    if isinstance(schema, dict):
        schema = {k: closed(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [closed(v) for v in schema]
    return schema


def crd_schemas(files: list[Path]) -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> schema, for every served version of every CRD."""
    schemas: dict[tuple[str, str], Any] = {}
    for path in files:
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                # metadata is the API server's (ObjectMeta), not the CRD's to describe
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                schemas[(f"{group}/{version['name']}", kind)] = closed(schema)
    return schemas


def problems_of(
    doc: dict[str, Any],
    schemas: dict[tuple[str, str], Any],
    upstream: dict[tuple[str, str], Any] | None = None,
) -> list[str]:
    """What a cluster would refuse in doc: schemas are Regulars' own (deploy/schemas), upstream
    the operators' CRDs when at hand (None: not at hand, so only our own are asked)."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    if key in schemas:
        problems = [
            f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}"
            for e in jsonschema.Draft7Validator(schemas[key]).iter_errors(doc)
        ]
        if upstream is not None:
            if key not in upstream:
                problems.append(f"{key[0]} {key[1]} is not served by the operators' CRDs")
            else:
                problems += [
                    f"{'/'.join(map(str, e.absolute_path)) or '.'} (operator's CRD): {e.message}"
                    for e in jsonschema.Draft7Validator(upstream[key]).iter_errors(doc)
                ]
        return problems
    if "." in key[0].split("/")[0] and not key[0].startswith(BUILTIN_DOTTED):
        return [f"no schema for {key[0]} {key[1]} (add one to deploy/schemas)"]
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path)) or '.'}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{key[0]} {key[1]} is not a Kubernetes {KUBERNETES} kind"]
    return []


#: API groups with a dot that Kubernetes itself serves
BUILTIN_DOTTED = (
    "networking.k8s.io/",
    "policy/",
    "rbac.authorization.k8s.io/",
    "storage.k8s.io/",
    "scheduling.k8s.io/",
    "coordination.k8s.io/",
    "node.k8s.io/",
    "discovery.k8s.io/",
    "admissionregistration.k8s.io/",
    "apiextensions.k8s.io/",
    "certificates.k8s.io/",
    "events.k8s.io/",
    "flowcontrol.apiserver.k8s.io/",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--crds", required=True, type=Path)
    args = parser.parse_args()
    schemas = own_schemas()
    upstream = crd_schemas(locked_crds(args.crds)) if args.crds.is_dir() else None
    print(
        f"custom kinds: {len(schemas)} own schemas (deploy/schemas)"
        + (
            f" and {len(upstream)} served versions of the operators' CRDs in {args.crds}"
            if upstream is not None
            else f"; no operators' CRDs at {args.crds}, so only those"
        )
    )
    failed = False
    for directory in kustomizations():
        docs = render(args.kubectl, directory)
        kinds = Counter(d["kind"] for d in docs)
        for doc in docs:
            for problem in problems_of(doc, schemas, upstream):
                failed = True
                print(
                    f"{directory.relative_to(ROOT)}: {doc['kind']}/{doc['metadata']['name']}: "
                    f"{problem}"
                )
        summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        print(
            f"{directory.relative_to(ROOT)}: {len(docs)} resources valid ({summary})"
            if not failed
            else f"{directory.relative_to(ROOT)}: rendered {len(docs)}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
