"""Offline validation of the deployment files: Dockerfile, docker-compose.yml, deploy/k8s.

No kustomize or kubectl binary is available to CI (and none is installable from the
registries it reaches without downloading a binary at run time), so this module carries a
small kustomize renderer for the subset the manifests use: ``resources`` (files and
directories), ``namespace``, ``labels``/``commonLabels``, ``commonAnnotations``,
``images``, ``replicas``, and ``patches``/``patchesStrategicMerge`` (strategic merge for
built-in kinds, JSON merge for custom resources, RFC 6902 JSON patches with a ``target``).
Anything outside that subset is an error, not silently ignored.

The checks then assert properties of the rendered base and overlays: probes, resources,
security contexts, secrets by reference only, every Kafka topic of the contract, topic
replication per overlay, Services that select real pods, autoscaling, PDBs and network
policies; and of docker-compose.yml and the Dockerfile.
"""

from __future__ import annotations

import copy
import http.server
import importlib.util
import re
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from regulars_runtime import staff

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
OVERLAYS = {"dev": K8S / "overlays" / "dev", "production": K8S / "overlays" / "production"}
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"

# the fixed contract (SPEC.md, libs/events/regulars_events/topics.py)
SERVICES = {"intake": 8001, "followup": 8002, "feedback": 8003, "loyalty": 8004}
FAMILIES = (
    "shop",
    "customer",
    "consent",
    "service",
    "appointment",
    "invoice",
    "service_plan",
    "referral",
    "followup",
    "message",
    "reminder",
    "survey",
    "feedback",
    "recovery_case",
    "review",
    "staff",
    "lifecycle",
)
EVENT_TOPICS = {f"regulars.{f}" for f in FAMILIES}
DEAD_LETTER_TOPICS = {f"regulars.dead_letter.{s}" for s in SERVICES}
ALL_TOPICS = EVENT_TOPICS | DEAD_LETTER_TOPICS
SECRET_NAME = "regulars-secrets"
SECRET_ENV = (
    "DATABASE_URL",
    "SMS_API_TOKEN",
    "REGULARS_WEBHOOK_SECRET_KEY",
    "REGULARS_STAFF_TOKEN_KEY",
)
KEDA_SERVICES = ("followup", "feedback", "loyalty")
HPA_SERVICES = ("intake",)


# =======================================================================================
# A kustomize subset
# =======================================================================================


class KustomizeError(Exception):
    pass


KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "commonLabels",
    "commonAnnotations",
    "images",
    "replicas",
    "patches",
    "patchesStrategicMerge",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ClusterIssuer",
}
# API groups whose kinds get strategic-merge semantics; custom resources get JSON merge
BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
}
# strategic-merge keys of the list fields the manifests patch (by field name)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
}
POD_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet"}


def kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise KustomizeError(f"{directory}: no kustomization file")


def load_docs(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a manifest file, each checked to be a Kubernetes object."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise KustomizeError(f"{path}: not YAML: {exc}") from exc
    for doc in docs:
        if not isinstance(doc, dict):
            raise KustomizeError(f"{path}: a document is not a mapping")
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise KustomizeError(f"{path}: a document has no {key}")
        if not (doc.get("metadata") or {}).get("name"):
            raise KustomizeError(f"{path}: a {doc['kind']} has no metadata.name")
    return docs


def group_of(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"]
    return api.split("/")[0] if "/" in api else ""


def version_of(obj: dict[str, Any]) -> str:
    return str(obj["apiVersion"]).split("/")[-1]


def name_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def res_id(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj["metadata"]
    return (group_of(obj), obj["kind"], meta.get("namespace") or "", meta["name"])


def pod_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    template: dict[str, Any] | None = None
    if obj["kind"] in POD_WORKLOADS:
        template = obj.setdefault("spec", {}).setdefault("template", {})
    elif obj["kind"] == "CronJob":
        template = obj["spec"]["jobTemplate"]["spec"]["template"]
    return template


def all_containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for field in ("initContainers", "containers"):
        yield from pod_spec.get(field) or []


def label_selector_matches(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = (s.strip() for s in term.split("!=", 1))
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = (s.strip() for s in term.split("=", 1))
            k = k.rstrip("=")
            if labels.get(k) != v.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def target_matches(target: dict[str, Any], obj: dict[str, Any]) -> bool:
    unknown = set(target) - {
        "group",
        "version",
        "kind",
        "name",
        "namespace",
        "labelSelector",
        "annotationSelector",
    }
    if unknown:
        raise KustomizeError(f"patch target fields not supported: {sorted(unknown)}")
    if "group" in target and target["group"] != group_of(obj):
        return False
    if "version" in target and target["version"] != version_of(obj):
        return False
    if "kind" in target and target["kind"] != obj["kind"]:
        return False
    if "name" in target and not re.fullmatch(target["name"], name_of(obj)):
        return False
    if "namespace" in target and target["namespace"] != (obj["metadata"].get("namespace") or ""):
        return False
    if "labelSelector" in target and not label_selector_matches(
        target["labelSelector"], labels_of(obj)
    ):
        return False
    annotations = obj["metadata"].get("annotations") or {}
    return "annotationSelector" not in target or label_selector_matches(
        target["annotationSelector"], annotations
    )


# --- strategic merge / JSON merge -------------------------------------------------------


def merge(dst: Any, patch: Any, strategic: bool, field: str = "") -> Any:
    if isinstance(patch, dict) and isinstance(dst, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        out = dict(dst)
        for key, value in patch.items():
            if key.startswith("$"):
                if key in ("$retainKeys", "$setElementOrder"):
                    continue
                raise KustomizeError(f"strategic-merge directive {key} not supported")
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, strategic, key)
            else:
                out[key] = strip_directives(copy.deepcopy(value))
        return out
    if isinstance(patch, list) and isinstance(dst, list) and strategic:
        key = MERGE_KEYS.get(field)
        if key is None and field == "ports":
            key = "containerPort" if any("containerPort" in i for i in patch) else "port"
        if key is not None:
            return merge_list(dst, patch, key, strategic)
    return strip_directives(copy.deepcopy(patch))


def merge_list(dst: list[Any], patch: list[Any], key: str, strategic: bool) -> list[Any]:
    out = list(dst)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise KustomizeError(f"strategic-merge list item without its merge key {key!r}")
        index = next((i for i, d in enumerate(out) if d.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                out.pop(index)
        elif index is None:
            out.append(strip_directives(copy.deepcopy(item)))
        else:
            out[index] = merge(out[index], item, strategic)
    return out


def strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [strip_directives(v) for v in value]
    return value


# --- RFC 6902 -------------------------------------------------------------------------


def pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def walk_to(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KustomizeError(f"JSON patch path {path!r} does not exist")
    return node


def json6902(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        parts = pointer(path)
        parent = walk_to(doc, parts[:-1], path)
        last = parts[-1]
        if kind in ("add", "replace"):
            value = copy.deepcopy(op["value"])
            if isinstance(parent, list):
                if last == "-" and kind == "add":
                    parent.append(value)
                elif last.isdigit() and int(last) <= len(parent) - (kind == "replace"):
                    if kind == "add":
                        parent.insert(int(last), value)
                    else:
                        parent[int(last)] = value
                else:
                    raise KustomizeError(f"JSON patch path {path!r} out of range")
            elif isinstance(parent, dict):
                if kind == "replace" and last not in parent:
                    raise KustomizeError(f"JSON patch replace of missing {path!r}")
                parent[last] = value
            else:
                raise KustomizeError(f"JSON patch path {path!r} has no container")
        elif kind == "remove":
            walk_to(doc, parts, path)
            if isinstance(parent, list):
                parent.pop(int(last))
            else:
                del parent[last]
        elif kind == "test":
            if walk_to(doc, parts, path) != op.get("value"):
                raise KustomizeError(f"JSON patch test failed at {path!r}")
        else:
            raise KustomizeError(f"JSON patch op {kind!r} not supported")
    return doc


# --- the transformers -----------------------------------------------------------------


def apply_patches(resources: list[dict[str, Any]], k: dict[str, Any], here: Path) -> None:
    entries: list[dict[str, Any]] = [{"path": p} for p in k.get("patchesStrategicMerge") or []]
    entries += k.get("patches") or []
    for entry in entries:
        if "path" in entry:
            source = here / entry["path"]
            if not source.is_file():
                raise KustomizeError(f"{here}: patch file {entry['path']} does not exist")
            text = source.read_text()
        elif "patch" in entry:
            text = entry["patch"]
        else:
            raise KustomizeError(f"{here}: a patch has neither path nor patch")
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
        target = entry.get("target")
        if len(docs) == 1 and isinstance(docs[0], list):  # RFC 6902
            if not target:
                raise KustomizeError(f"{here}: a JSON 6902 patch needs a target")
            hits = [i for i, r in enumerate(resources) if target_matches(target, r)]
            if not hits:
                raise KustomizeError(f"{here}: patch target {target} matches nothing")
            for i in hits:
                resources[i] = json6902(resources[i], docs[0])
            continue
        for doc in docs:
            if not isinstance(doc, dict) or "kind" not in doc:
                raise KustomizeError(f"{here}: a strategic-merge patch has no kind")
            if target:
                hits = [i for i, r in enumerate(resources) if target_matches(target, r)]
            else:
                name = (doc.get("metadata") or {}).get("name")
                hits = [
                    i
                    for i, r in enumerate(resources)
                    if r["kind"] == doc["kind"]
                    and name_of(r) == name
                    and group_of(r) == group_of(doc)
                ]
            if not hits:
                raise KustomizeError(f"{here}: patch for {doc['kind']} matches nothing")
            for i in hits:
                body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
                meta = dict(body.get("metadata") or {})
                meta.pop("name", None)
                meta.pop("namespace", None)
                body["metadata"] = meta
                strategic = group_of(resources[i]) in BUILTIN_GROUPS
                resources[i] = merge(resources[i], body, strategic)


def selector_paths(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The label maps of an object that select pods (changed by includeSelectors)."""
    spec = obj.get("spec") or {}
    kind = obj["kind"]
    if kind == "Service":
        return [spec.setdefault("selector", {})]
    if kind in SCALABLE | {"DaemonSet"} or kind == "PodDisruptionBudget":
        return [spec.setdefault("selector", {}).setdefault("matchLabels", {})]
    if kind == "NetworkPolicy":
        return [spec.setdefault("podSelector", {}).setdefault("matchLabels", {})]
    return []


def add_labels(
    resources: list[dict[str, Any]], pairs: dict[str, str], selectors: bool, templates: bool
) -> None:
    for obj in resources:
        obj["metadata"].setdefault("labels", {}).update(pairs)
        template = pod_template(obj)
        if template is not None and (templates or selectors):
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if selectors:
            for sel in selector_paths(obj):
                sel.update(pairs)


def set_images(resources: list[dict[str, Any]], images: list[dict[str, Any]]) -> None:
    for obj in resources:
        template = pod_template(obj)
        if template is None:
            continue
        for container in all_containers(template.get("spec") or {}):
            image = container.get("image", "")
            bare = re.split(r"@", image)[0]
            name = bare.rsplit(":", 1)[0] if ":" in bare.rsplit("/", 1)[-1] else bare
            for rule in images:
                if rule["name"] != name:
                    continue
                new_name = rule.get("newName", name)
                if "digest" in rule:
                    container["image"] = f"{new_name}@{rule['digest']}"
                else:
                    tag = rule.get("newTag")
                    if tag is None:
                        old = bare[len(name) :]
                        container["image"] = new_name + old
                    else:
                        container["image"] = f"{new_name}:{tag}"


def render(directory: Path) -> list[dict[str, Any]]:
    """`kustomize build directory`, for the supported subset."""
    directory = directory.resolve()
    k = yaml.safe_load(kustomization_file(directory).read_text()) or {}
    unsupported = set(k) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{directory}: kustomization fields not supported: {unsupported}")
    resources: list[dict[str, Any]] = []
    for entry in k.get("resources") or []:
        path = (directory / entry).resolve()
        if path.is_dir():
            resources += render(path)
        elif path.is_file():
            resources += load_docs(path)
        else:
            raise KustomizeError(f"{directory}: resource {entry} does not exist")
    seen: set[tuple[str, str, str, str]] = set()
    for obj in resources:
        if res_id(obj) in seen:
            raise KustomizeError(f"{directory}: {res_id(obj)} is defined twice")
        seen.add(res_id(obj))

    apply_patches(resources, k, directory)

    if "namespace" in k:
        for obj in resources:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = k["namespace"]
    if k.get("commonLabels"):
        add_labels(resources, k["commonLabels"], selectors=True, templates=True)
    for entry in k.get("labels") or []:
        add_labels(
            resources,
            entry.get("pairs") or {},
            selectors=bool(entry.get("includeSelectors", False)),
            templates=bool(entry.get("includeTemplates", False)),
        )
    if k.get("commonAnnotations"):
        for obj in resources:
            obj["metadata"].setdefault("annotations", {}).update(k["commonAnnotations"])
            template = pod_template(obj)
            if template is not None:
                annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
                annotations.update(k["commonAnnotations"])
    for rule in k.get("replicas") or []:
        hits = [r for r in resources if r["kind"] in SCALABLE and name_of(r) == rule["name"]]
        if not hits:
            raise KustomizeError(f"{directory}: replicas for unknown {rule['name']}")
        for obj in hits:
            obj["spec"]["replicas"] = int(rule["count"])
    set_images(resources, k.get("images") or [])
    return resources


# =======================================================================================
# Helpers for the checks
# =======================================================================================

RENDERS = ["base", "dev", "production"]


def render_named(which: str) -> list[dict[str, Any]]:
    return render(BASE if which == "base" else OVERLAYS[which])


@pytest.fixture(scope="module", params=RENDERS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render_named(request.param)


def of_kind(resources: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["kind"] == kind]


def one(resources: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    hits = [r for r in of_kind(resources, kind) if name_of(r) == name]
    assert len(hits) == 1, f"expected one {kind} {name}, found {len(hits)}"
    return hits[0]


def regulars_deployments(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for svc in SERVICES:
        found[svc] = one(resources, "Deployment", f"regulars-{svc}")
    return found


def config(resources: list[dict[str, Any]]) -> dict[str, str]:
    return dict(one(resources, "ConfigMap", "regulars-config").get("data") or {})


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def template_labels(obj: dict[str, Any]) -> dict[str, str]:
    template = pod_template(obj) or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|)$")
_MEM_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def cpu(value: Any) -> float:
    m = _CPU.match(str(value))
    assert m, f"bad CPU quantity {value!r}"
    return float(m.group(1)) / (1000 if m.group(2) else 1)


def memory(value: Any) -> float:
    m = _MEM.match(str(value))
    assert m, f"bad memory quantity {value!r}"
    return float(m.group(1)) * _MEM_UNITS[m.group(2)]


SECRETISH_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_?KEY|_KEY$|^KEY)", re.I)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@", re.I)


def looks_secret(name: str, value: Any = None) -> bool:
    if name in SECRET_ENV or SECRETISH_NAME.search(name):
        return True
    return isinstance(value, str) and bool(URL_WITH_PASSWORD.search(value))


def container_port(container: dict[str, Any], ref: Any) -> int | None:
    for port in container.get("ports") or []:
        if ref in (port.get("name"), port.get("containerPort")):
            return int(port["containerPort"])
    return None


def env_value(container: dict[str, Any], name: str) -> Any:
    for env in container.get("env") or []:
        if env["name"] == name:
            return env
    return None


# =======================================================================================
# The renderer itself can fail (so the checks below mean something)
# =======================================================================================


def test_renderer_rejects_what_it_cannot_render(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    with pytest.raises(KustomizeError, match="does not exist"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: []\nhelmCharts: []\n")
    with pytest.raises(KustomizeError, match="not supported"):
        render(tmp_path)


def test_renderer_merges_patches_like_kustomize(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "d.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d"},
                "spec": {
                    "selector": {"matchLabels": {"app": "d"}},
                    "template": {
                        "metadata": {"labels": {"app": "d"}},
                        "spec": {
                            "containers": [
                                {
                                    "name": "a",
                                    "image": "img:1",
                                    "env": [{"name": "X", "value": "1"}],
                                },
                                {"name": "b", "image": "other"},
                            ]
                        },
                    },
                },
            }
        )
    )
    (base / "kustomization.yaml").write_text("resources: [d.yaml]\n")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "namespace": "ns",
                "resources": ["../base"],
                "images": [{"name": "img", "newTag": "2"}],
                "replicas": [{"name": "d", "count": 3}],
                "labels": [{"pairs": {"team": "t"}, "includeTemplates": True}],
                "patches": [
                    {
                        "patch": yaml.safe_dump(
                            {
                                "apiVersion": "apps/v1",
                                "kind": "Deployment",
                                "metadata": {"name": "d"},
                                "spec": {
                                    "template": {
                                        "spec": {
                                            "containers": [
                                                {"name": "a", "env": [{"name": "Y", "value": "2"}]}
                                            ]
                                        }
                                    }
                                },
                            }
                        )
                    },
                    {
                        "target": {"kind": "Deployment", "name": "d"},
                        "patch": "- op: replace\n  path: /spec/template/spec/containers/1/image\n"
                        "  value: other:9\n",
                    },
                ],
            }
        )
    )
    [d] = render(overlay)
    containers = d["spec"]["template"]["spec"]["containers"]
    assert d["metadata"]["namespace"] == "ns"
    assert d["spec"]["replicas"] == 3
    assert [c["image"] for c in containers] == ["img:2", "other:9"]
    assert containers[0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "d", "team": "t"}
    assert d["spec"]["selector"]["matchLabels"] == {"app": "d"}  # includeSelectors: false
    # a patch whose path is wrong is an error, not a no-op
    k = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    k["patches"][1]["patch"] = "- op: replace\n  path: /spec/nope/x\n  value: 1\n"
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(k))
    with pytest.raises(KustomizeError, match="does not exist"):
        render(overlay)


# =======================================================================================
# deploy/k8s: files
# =======================================================================================


def kustomization_dirs() -> list[Path]:
    return sorted({p.parent for n in KUSTOMIZATION_NAMES for p in K8S.rglob(n)})


def test_every_listed_file_exists_parses_and_every_manifest_is_listed() -> None:
    dirs = kustomization_dirs()
    assert BASE in dirs and all(o in dirs for o in OVERLAYS.values())
    referenced: set[Path] = set()
    for d in dirs:
        k = yaml.safe_load(kustomization_file(d).read_text())
        assert isinstance(k, dict) and k.get("resources"), f"{d}: no resources"
        for entry in k["resources"]:
            path = (d / entry).resolve()
            assert path.exists(), f"{d}: resource {entry} does not exist"
            if path.is_file():
                assert load_docs(path), f"{path}: no documents"
                referenced.add(path)
        for entry in (k.get("patches") or []) + [
            {"path": p} for p in k.get("patchesStrategicMerge") or []
        ]:
            if "path" in entry:
                path = (d / entry["path"]).resolve()
                assert path.is_file(), f"{d}: patch {entry['path']} does not exist"
                assert yaml.safe_load(path.read_text()), f"{path}: empty patch"
                referenced.add(path)
    manifests = {p.resolve() for p in K8S.rglob("*.y*ml") if p.name not in KUSTOMIZATION_NAMES}
    orphans = sorted(str(p.relative_to(K8S)) for p in manifests - referenced)
    assert not orphans, f"manifests no kustomization uses: {orphans}"


def test_no_secret_with_values_is_committed() -> None:
    for path in K8S.rglob("*.y*ml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path}: commits a Secret"
                assert "stringData" not in doc, f"{path}: has stringData"


@pytest.mark.parametrize("which", RENDERS)
def test_renders(which: str) -> None:
    resources = render_named(which)
    assert resources
    kinds = {r["kind"] for r in resources}
    for kind in (
        "Deployment",
        "Service",
        "ConfigMap",
        "Job",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "KafkaTopic",
        "HorizontalPodAutoscaler",
        "ScaledObject",
    ):
        assert kind in kinds, f"{which}: no {kind}"
    namespaces = {r["metadata"].get("namespace") for r in resources}
    if which == "base":
        assert namespaces == {None}, "the base must be namespace-less"
    else:
        assert len(namespaces) == 1 and None not in namespaces, f"{which}: {namespaces}"
    dns = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    for r in resources:
        assert dns.match(name_of(r)), f"{r['kind']} name {name_of(r)!r} is not a DNS name"


def test_overlays_use_different_namespaces() -> None:
    namespaces = {
        which: {r["metadata"]["namespace"] for r in render_named(which)} for which in OVERLAYS
    }
    assert namespaces["dev"] != namespaces["production"]


# =======================================================================================
# deploy/k8s: workloads
# =======================================================================================


def test_deployments_have_probes_resources_and_hardening(rendered: Any) -> None:
    which, resources = rendered
    workloads = of_kind(resources, "Deployment") + of_kind(resources, "Job")
    assert workloads
    for obj in workloads:
        where = f"{which}: {obj['kind']} {name_of(obj)}"
        pod = obj["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext") or {}
        assert pod.get("automountServiceAccountToken") is False, f"{where}: mounts an SA token"
        for c in all_containers(pod):
            sc = c.get("securityContext") or {}
            cw = f"{where} container {c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{cw}: root"
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, f"{cw}: runAsUser 0"
            assert sc.get("readOnlyRootFilesystem") is True, f"{cw}: writable root"
            assert sc.get("allowPrivilegeEscalation") is False, f"{cw}: privilege escalation"
            assert "ALL" in ((sc.get("capabilities") or {}).get("drop") or []), f"{cw}: caps"
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for unit in ("cpu", "memory"):
                    assert unit in (res.get(part) or {}), f"{cw}: no {part}.{unit}"
            assert cpu(res["requests"]["cpu"]) <= cpu(res["limits"]["cpu"]), cw
            assert memory(res["requests"]["memory"]) <= memory(res["limits"]["memory"]), cw
            if obj["kind"] == "Deployment":
                for probe in ("livenessProbe", "readinessProbe"):
                    assert (c.get(probe) or {}).get("httpGet"), f"{cw}: no HTTP {probe}"
                    port = container_port(c, c[probe]["httpGet"].get("port"))
                    assert port is not None, f"{cw}: {probe} port is not a container port"


def test_regulars_services_run_their_module_with_their_port(rendered: Any) -> None:
    which, resources = rendered
    settings = config(resources)
    for svc, port in SERVICES.items():
        dep = regulars_deployments(resources)[svc]
        where = f"{which}: regulars-{svc}"
        template = dep["spec"]["template"]
        [c] = template["spec"]["containers"]
        assert c["command"] == ["python", "-m", f"regulars_{svc}"], where
        assert (env_value(c, "PORT") or {}).get("value") == str(port), f"{where}: PORT"
        assert container_port(c, "http") == port, f"{where}: container port"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", where
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", where
        assert container_port(c, c["readinessProbe"]["httpGet"]["port"]) == port, where
        assert {"configMapRef": {"name": "regulars-config"}} in (c.get("envFrom") or []), where
        # the services default to 127.0.0.1: a pod must listen on its own address
        host = (env_value(c, "HOST") or {}).get("value", settings.get("HOST"))
        assert host == "0.0.0.0", f"{where}: HOST is {host!r}, the pod would be unreachable"
        grace = template["spec"].get("terminationGracePeriodSeconds", 30)
        assert grace >= 30, f"{where}: {grace}s is too short to drain"
        annotations = template["metadata"].get("annotations") or {}
        assert annotations.get("prometheus.io/scrape") == "true", where
        assert annotations.get("prometheus.io/port") == str(port), where
        assert annotations.get("prometheus.io/path") == "/metrics", where
        assert template_labels(dep).get("app.kubernetes.io/part-of") == "regulars", where


def test_one_image_for_every_regulars_container(rendered: Any) -> None:
    which, resources = rendered
    images = set()
    workloads = [
        *regulars_deployments(resources).values(),
        one(resources, "Job", "regulars-migrate"),
    ]
    for obj in workloads:
        for c in all_containers(obj["spec"]["template"]["spec"]):
            images.add(c["image"])
    assert len(images) == 1, f"{which}: {images}"
    [image] = images
    if which == "production":
        name, _, tag = image.rpartition(":")
        pinned_digest = "@sha256:" in image
        assert pinned_digest or (name and tag and tag not in ("latest", "dev", "main")), image
        assert pinned_digest or re.match(r"^v?\d+\.\d+\.\d+", tag), f"not a release tag: {image}"
    if which == "dev":
        assert image.endswith(":dev"), image


def test_migration_job(rendered: Any) -> None:
    which, resources = rendered
    job = one(resources, "Job", "regulars-migrate")
    pod = job["spec"]["template"]["spec"]
    [c] = pod["containers"]
    assert c["command"] == ["regulars", "migrate"], which
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"].get("backoffLimit", 6) >= 1
    ref = (env_value(c, "DATABASE_URL") or {}).get("valueFrom", {}).get("secretKeyRef")
    assert ref == {"name": SECRET_NAME, "key": "DATABASE_URL"}, which


# =======================================================================================
# deploy/k8s: secrets by reference only
# =======================================================================================


def test_secrets_only_by_reference(rendered: Any) -> None:
    which, resources = rendered
    assert not of_kind(resources, "Secret"), f"{which}: renders a Secret"
    configmaps = {name_of(c) for c in of_kind(resources, "ConfigMap")}
    for cm in of_kind(resources, "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            assert not looks_secret(key, value), f"{which}: ConfigMap {name_of(cm)} holds {key}"
    for obj in resources:
        template = pod_template(obj)
        if template is None:
            continue
        for c in all_containers(template["spec"]):
            where = f"{which}: {obj['kind']} {name_of(obj)} container {c['name']}"
            for env in c.get("env") or []:
                if looks_secret(env["name"], env.get("value")):
                    assert "value" not in env, f"{where}: {env['name']} has a literal value"
                    ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
                    assert ref.get("name") and ref.get("key"), f"{where}: {env['name']}"
            for source in c.get("envFrom") or []:
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps, where
                else:
                    assert "secretRef" in source, where


def test_regulars_secrets_are_referenced_and_documented(rendered: Any) -> None:
    which, resources = rendered
    readme = (K8S / "README.md").read_text()
    documented = set(re.findall(r"^\|\s*`([A-Z0-9_]+)`", readme, re.M))
    assert set(SECRET_ENV) <= documented, f"README documents {documented}"
    assert f"`{SECRET_NAME}`" in readme
    for svc, dep in regulars_deployments(resources).items():
        [c] = dep["spec"]["template"]["spec"]["containers"]
        for name in SECRET_ENV:
            env = env_value(c, name)
            assert env, f"{which}: regulars-{svc} has no {name}"
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET_NAME and ref["key"] in documented, (which, svc, name)


def test_secret_detector_flags_what_it_should() -> None:
    assert looks_secret("SMS_API_TOKEN")
    assert looks_secret("REGULARS_WEBHOOK_SECRET_KEY")
    assert looks_secret("REGULARS_STAFF_TOKEN_KEY")
    assert looks_secret("DATABASE_URL")
    assert looks_secret("BROKER_URL", "postgresql://u:hunter2@db:5432/x")
    assert not looks_secret("SMTP_URL", "smtp://relay:25")
    assert not looks_secret("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")


# =======================================================================================
# deploy/k8s: Kafka topics
# =======================================================================================


def topics(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for t in of_kind(resources, "KafkaTopic"):
        name = (t.get("spec") or {}).get("topicName") or name_of(t)
        assert name not in found, f"topic {name} defined twice"
        found[name] = t
    return found


def test_contract_topic_list_matches_the_code() -> None:
    import regulars_events.topics as module

    assert set(module.all_topics()) == EVENT_TOPICS
    assert {module.dead_letter_topic(s) for s in SERVICES} == DEAD_LETTER_TOPICS


def test_every_topic_has_a_kafkatopic_in_base() -> None:
    found = topics(render(BASE))
    assert set(found) == ALL_TOPICS, (
        f"missing {sorted(ALL_TOPICS - set(found))}, unexpected {sorted(set(found) - ALL_TOPICS)}"
    )
    for name, t in found.items():
        assert t["apiVersion"] == "kafka.strimzi.io/v1beta2", name
        assert labels_of(t).get("strimzi.io/cluster"), f"{name}: no strimzi.io/cluster label"
        spec = t["spec"]
        assert isinstance(spec.get("partitions"), int) and spec["partitions"] >= 1, name
        assert isinstance(spec.get("replicas"), int) and spec["replicas"] >= 1, name
        retention = int(spec["config"]["retention.ms"])
        # at least the outbox replay window (7 days), so a replay can be cross-checked
        assert retention >= 7 * 86400 * 1000, f"{name}: retention {retention} ms"


@pytest.mark.parametrize(("which", "replicas", "min_isr"), [("dev", 1, 1), ("production", 3, 2)])
def test_topic_replication_per_overlay(which: str, replicas: int, min_isr: int) -> None:
    resources = render_named(which)
    found = topics(resources)
    assert set(found) == ALL_TOPICS
    settings = config(resources)
    for name, t in found.items():
        spec = t["spec"]
        assert spec["replicas"] == replicas, f"{which}: {name} replicas {spec['replicas']}"
        assert int(spec["config"]["min.insync.replicas"]) == min_isr, f"{which}: {name}"
        assert int(spec["config"]["min.insync.replicas"]) <= spec["replicas"]
        # the services create missing topics with these settings: they must agree
        assert int(settings["KAFKA_REPLICATION_FACTOR"]) == spec["replicas"], f"{which}: {name}"
        assert int(settings["KAFKA_TOPIC_PARTITIONS"]) == spec["partitions"], f"{which}: {name}"


# =======================================================================================
# deploy/k8s: Services, PDBs, autoscaling, network policies
# =======================================================================================


def test_each_service_selects_a_deployment_port(rendered: Any) -> None:
    which, resources = rendered
    deployments = of_kind(resources, "Deployment")
    for svc in of_kind(resources, "Service"):
        selector = svc["spec"].get("selector") or {}
        hits = [d for d in deployments if selects(selector, template_labels(d))]
        assert hits, f"{which}: Service {name_of(svc)} selects no Deployment's pods"
        for d in hits:
            assert selects(d["spec"]["selector"]["matchLabels"], template_labels(d))
            containers = d["spec"]["template"]["spec"]["containers"]
            for port in svc["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                assert any(container_port(c, target) for c in containers), (
                    f"{which}: Service {name_of(svc)} port {target} is no container port"
                )
    served = {
        name_of(d)
        for d in deployments
        if any(
            selects(s["spec"].get("selector") or {}, template_labels(d))
            for s in of_kind(resources, "Service")
        )
    }
    assert {f"regulars-{s}" for s in SERVICES} <= served


def test_each_deployment_has_a_pdb_that_allows_a_drain(rendered: Any) -> None:
    which, resources = rendered
    pdbs = of_kind(resources, "PodDisruptionBudget")
    for svc, dep in regulars_deployments(resources).items():
        hits = [
            p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"], template_labels(dep))
        ]
        assert len(hits) == 1, f"{which}: regulars-{svc} has {len(hits)} PDBs"
        spec = hits[0]["spec"]
        if "minAvailable" in spec:
            assert int(spec["minAvailable"]) < dep["spec"].get("replicas", 1), (which, svc)
        else:
            assert int(spec["maxUnavailable"]) >= 1, (which, svc)


def test_autoscaling(rendered: Any) -> None:
    which, resources = rendered
    deployments = regulars_deployments(resources)
    settings = config(resources)
    partitions = int(settings["KAFKA_TOPIC_PARTITIONS"])
    scaled: dict[str, tuple[int, int]] = {}
    for hpa in of_kind(resources, "HorizontalPodAutoscaler"):
        assert hpa["apiVersion"] == "autoscaling/v2"
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment"
        cpu_metrics = [
            m
            for m in hpa["spec"]["metrics"]
            if m["type"] == "Resource" and m["resource"]["name"] == "cpu"
        ]
        assert cpu_metrics, f"{which}: HPA {name_of(hpa)} does not scale on CPU"
        assert ref["name"] not in scaled, f"{which}: {ref['name']} scaled twice"
        scaled[ref["name"]] = (hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"])
    for so in of_kind(resources, "ScaledObject"):
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        ref = so["spec"]["scaleTargetRef"]
        target = ref["name"]
        assert target not in scaled, f"{which}: {target} scaled twice (HPA and KEDA)"
        svc = target.removeprefix("regulars-")
        [trigger] = so["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == f"regulars-{svc}", f"{which}: {target}"
        assert int(meta["lagThreshold"]) > 0
        assert meta["bootstrapServers"] == settings["KAFKA_BOOTSTRAP_SERVERS"], which
        low, high = so["spec"].get("minReplicaCount", 0), so["spec"]["maxReplicaCount"]
        assert high <= partitions, f"{which}: {target} may outnumber the {partitions} partitions"
        scaled[target] = (low, high)
    assert {f"regulars-{s}" for s in HPA_SERVICES} == {
        h["spec"]["scaleTargetRef"]["name"] for h in of_kind(resources, "HorizontalPodAutoscaler")
    }
    assert {f"regulars-{s}" for s in KEDA_SERVICES} == {
        s["spec"]["scaleTargetRef"]["name"] for s in of_kind(resources, "ScaledObject")
    }
    for svc, dep in deployments.items():
        low, high = scaled[f"regulars-{svc}"]
        assert 1 <= low <= high, (which, svc)
        assert low <= dep["spec"].get("replicas", 1) <= high, f"{which}: {svc} replicas"


def test_production_is_bigger_than_dev() -> None:
    dev = regulars_deployments(render_named("dev"))
    prod = regulars_deployments(render_named("production"))
    for svc in SERVICES:
        assert dev[svc]["spec"]["replicas"] == 1, svc
        assert prod[svc]["spec"]["replicas"] >= 2, svc
        [d] = dev[svc]["spec"]["template"]["spec"]["containers"]
        [p] = prod[svc]["spec"]["template"]["spec"]["containers"]
        assert memory(p["resources"]["limits"]["memory"]) > memory(
            d["resources"]["limits"]["memory"]
        )
        assert cpu(p["resources"]["requests"]["cpu"]) > cpu(d["resources"]["requests"]["cpu"])


def policy_selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"].get("podSelector") or {}
    if selector.get("matchExpressions"):
        raise AssertionError("matchExpressions are not evaluated by this test")
    match = selector.get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in match.items())


def allowed_ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
    ports = set()
    for rule in rules:
        for port in rule.get("ports") or []:
            ports.add((port.get("protocol", "TCP"), int(port["port"])))
    return ports


def test_network_policies(rendered: Any) -> None:
    which, resources = rendered
    policies = of_kind(resources, "NetworkPolicy")
    pods = {name_of(w): template_labels(w) for w in regulars_deployments(resources).values()}
    pods["regulars-migrate"] = template_labels(one(resources, "Job", "regulars-migrate"))
    # default deny: a policy with Ingress and no rules that selects every Regulars pod
    deny = [
        p
        for p in policies
        if "Ingress" in p["spec"].get("policyTypes", []) and not p["spec"].get("ingress")
    ]
    assert deny, f"{which}: no default-deny ingress policy"
    for name, labels in pods.items():
        assert any(policy_selects(p, labels) for p in deny), f"{which}: {name} not denied"
    # each API port is open on its own pods
    for svc, port in SERVICES.items():
        labels = pods[f"regulars-{svc}"]
        open_ports = set()
        for p in policies:
            if policy_selects(p, labels):
                open_ports |= allowed_ports(p["spec"].get("ingress") or [])
        assert ("TCP", port) in open_ports, f"{which}: ingress to {svc}:{port} is not allowed"
    # egress: DNS, PostgreSQL, Kafka and the configured SMTP port, for every Regulars pod
    settings = config(resources)
    smtp_port = urlsplit(settings["SMTP_URL"]).port or 25
    kafka_ports = {int(s.rsplit(":", 1)[1]) for s in settings["KAFKA_BOOTSTRAP_SERVERS"].split(",")}
    needed = {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", smtp_port)}
    needed |= {("TCP", p) for p in kafka_ports}
    for name, labels in pods.items():
        egress = [
            p
            for p in policies
            if "Egress" in p["spec"].get("policyTypes", []) and policy_selects(p, labels)
        ]
        assert egress, f"{which}: {name} has no egress policy (egress would be unrestricted)"
        allowed = set()
        for p in egress:
            allowed |= allowed_ports(p["spec"].get("egress") or [])
        # the console (loyalty) calls the other three's APIs
        console = {("TCP", SERVICES[s]) for s in ("intake", "followup", "feedback")}
        wanted = needed | console if name == "regulars-loyalty" else needed
        missing = wanted - allowed
        assert not missing, f"{which}: {name} cannot reach {sorted(missing)}"


def test_schemas_of_builtin_kinds(rendered: Any) -> None:
    """Validated against Kubernetes' own schemas when `kubernetes-validate` is installed."""
    import kubernetes_validate as kv

    which, resources = rendered
    builtin = [r for r in resources if group_of(r) in BUILTIN_GROUPS]
    assert builtin, which
    for obj in builtin:
        kv.validate(obj, "1.33.0", strict=True)


# =======================================================================================
# docker-compose.yml
# =======================================================================================


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def published(service: dict[str, Any]) -> set[tuple[int, int]]:
    out = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.add((int(port["published"]), int(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            out.add((int(parts[-2]), int(parts[-1])))
    return out


def pinned(image: str) -> bool:
    tag = image.rpartition(":")[2] if ":" in image.rsplit("/", 1)[-1] else ""
    return "@sha256:" in image or bool(tag and tag != "latest")


def test_compose_infrastructure(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:") and pinned(kafka["image"]), kafka["image"]
    env = compose_env(kafka)
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    assert not any("ZOOKEEPER" in k for k in env), "KRaft mode has no ZooKeeper"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@")
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"  # one node
    assert re.fullmatch(r"postgres:18(\.\d+)*(-\w+)?", services["postgres"]["image"])
    smtp = [s for s in services.values() if "mailpit" in str(s.get("image", ""))]
    assert smtp and pinned(smtp[0]["image"])
    for name in ("kafka", "postgres"):
        assert services[name].get("healthcheck"), f"{name} has no healthcheck"


def test_compose_migrate_and_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["regulars", "migrate"]
    assert str(migrate.get("restart", "no")) == "no", "a one-shot must not restart"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for svc, port in SERVICES.items():
        s = services[svc]
        assert s["command"] == ["python", "-m", f"regulars_{svc}"], svc
        assert (port, port) in published(s), f"{svc} is not published on {port}"
        env = compose_env(s)
        assert env["PORT"] == str(port) and env["HOST"] == "0.0.0.0", svc
        deps = s["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", svc
        assert deps["postgres"]["condition"] == "service_healthy", svc
        assert deps["kafka"]["condition"] == "service_healthy", svc
        check = s.get("healthcheck") or {}
        assert any("/readyz" in str(part) or "/healthz" in str(part) for part in check["test"])
        assert s.get("image") == migrate.get("image") and s.get("build"), "one image"
        # settings point at services of this file
        hosts = {
            urlsplit(env["DATABASE_URL"]).hostname,
            urlsplit(env["SMTP_URL"]).hostname,
            env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0],
        }
        assert hosts <= set(services), f"{svc}: {hosts}"
        for name in SECRET_ENV:
            assert name in env, f"{svc}: no {name}"
        # a default short of the services' minimum would stop all four at start
        staff_key = re.fullmatch(
            r"\$\{REGULARS_STAFF_TOKEN_KEY:-(.+)\}", env["REGULARS_STAFF_TOKEN_KEY"]
        )
        assert staff_key and len(staff_key.group(1)) >= staff.MIN_KEY_LENGTH, svc
    ports = [p for svc in SERVICES for p, _ in published(services[svc])]
    assert sorted(ports) == [8001, 8002, 8003, 8004]


# =======================================================================================
# Dockerfile, .dockerignore, the health check script
# =======================================================================================


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def workspace_members() -> list[str]:
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    members = []
    for pattern in root["tool"]["uv"]["workspace"]["members"]:
        members += [str(p.parent.relative_to(ROOT)) for p in ROOT.glob(f"{pattern}/pyproject.toml")]
    return sorted(members)


def test_dockerfile() -> None:
    ins = dockerfile_instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    assert any(" AS builder" in f.replace(" as ", " AS ") for f in froms)
    args = dict(rest.split("=", 1) for word, rest in ins if word == "ARG" and "=" in rest)
    base_image = args.get("PYTHON_IMAGE", froms[-1])
    assert re.match(r"python:3\.11[.\d]*-slim", base_image), base_image
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert re.search(r"pip install \"?uv==", runs), "uv must be pinned and installed with pip"
    assert "uv sync --frozen --no-dev" in runs
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage must switch user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric and non-root"
    assert not any(w == "RUN" and "uv " in r for w, r in final), "no uv in the runtime stage"
    for word, rest in ins:
        if word in ("ENV", "ARG"):
            for name in re.findall(r"([A-Z_][A-Z0-9_]*)=", rest):
                assert not looks_secret(name), f"{word} {name}: no secrets in the image"
    copies = " ".join(rest for word, rest in ins if word == "COPY")
    for member in workspace_members():
        assert f"{member}/pyproject.toml" in copies, f"{member} is not in the dependency layer"
    for word, rest in ins:
        if word == "COPY" and "--from=" not in rest:
            for src in [a for a in rest.split() if not a.startswith("--")][:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: no such path"


def dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        regex = re.escape(pat.strip("/")).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if re.fullmatch(regex + "(?:/.*)?", path):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_workspace_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in ("pyproject.toml", "uv.lock", "deploy/docker/healthcheck.py"):
        assert not dockerignored(path, patterns), f"{path} must reach the build"
    for member in workspace_members():
        needed = [ROOT / member / "pyproject.toml"]
        for package in (ROOT / member).glob("regulars_*"):
            needed += [p for p in package.rglob("*") if p.is_file()]
        assert len(needed) > 1, f"{member}: no package found"
        for source in needed:
            rel = source.relative_to(ROOT)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue  # caches, not sources
            assert not dockerignored(str(rel), patterns), f"{rel} is ignored but needed"
    for path in (".venv/bin/python", ".git/config", "libs/x/__pycache__/a.pyc", ".env"):
        assert dockerignored(path, patterns), f"{path} must not reach the build"


def load_healthcheck() -> Any:
    spec = importlib.util.spec_from_file_location("regulars_healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_container_healthcheck_script(monkeypatch: pytest.MonkeyPatch) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        check = load_healthcheck()
        monkeypatch.setenv("PORT", str(server.server_address[1]))
        assert check.main(["healthcheck", "/readyz"]) == 0
        assert check.main(["healthcheck", "/healthz"]) == 1
    finally:
        server.shutdown()
        server.server_close()
    monkeypatch.setenv("PORT", str(server.server_address[1]))  # now closed
    assert check.main(["healthcheck", "/readyz"]) == 1
