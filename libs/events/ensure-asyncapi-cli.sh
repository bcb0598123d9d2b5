#!/usr/bin/env bash
# `make contract` validates libs/events/asyncapi.yaml with the AsyncAPI CLI: node and npm
# from Debian, and @asyncapi/cli at the pinned version in .tools/asyncapi (never a global
# npm install, so nothing outside the checkout changes and `make clean` removes it).
# Quick when the pinned version is there; otherwise it installs and says so.
# Usage: libs/events/ensure-asyncapi-cli.sh VERSION
set -euo pipefail

VERSION=${1:?usage: libs/events/ensure-asyncapi-cli.sh VERSION}
cd "$(dirname "$0")/../.."
PREFIX=.tools/asyncapi
INSTALLED=$PREFIX/node_modules/@asyncapi/cli/package.json

apt=(apt-get)
if [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null; then
    apt=(sudo apt-get)
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if ! command -v apt-get >/dev/null; then
        echo "asyncapi: node and npm are missing and there is no apt-get here; install them first" >&2
        exit 1
    fi
    started=$SECONDS
    echo "asyncapi: node or npm is missing; installing nodejs and npm with ${apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
        echo "asyncapi: no apt package lists yet: ${apt[*]} update"
        "${apt[@]}" update -q
    fi
    if ! "${apt[@]}" install -y -q nodejs npm; then
        echo "asyncapi: install failed; updating the package lists and trying again"
        "${apt[@]}" update -q
        "${apt[@]}" install -y -q nodejs npm
    fi
    echo "asyncapi: node $(node --version) and npm $(npm --version) installed" \
        "in $((SECONDS - started)) s"
fi

# the CLI reports each command to its makers unless told not to: told here, once
mkdir -p "$PREFIX"
if [[ ! -f "$PREFIX/analytics.json" ]]; then
    echo '{"analyticsEnabled": "false", "infoMessageShown": "true", "userID": "regulars"}' \
        >"$PREFIX/analytics.json"
fi

have=""
if [[ -f "$INSTALLED" ]]; then
    have=$(node -p "require('./$INSTALLED').version")
fi
if [[ "$have" == "$VERSION" && -x "$PREFIX/node_modules/.bin/asyncapi" ]]; then
    exit 0
fi

started=$SECONDS
echo "asyncapi: installing @asyncapi/cli@$VERSION into $PREFIX${have:+ (found $have)}" \
    "with npm $(npm --version), node $(node --version)"
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --save-exact --no-audit --no-fund --loglevel=error \
    "@asyncapi/cli@$VERSION"
echo "asyncapi: $("$PREFIX/node_modules/.bin/asyncapi" --version 2>/dev/null | head -1) installed" \
    "in $((SECONDS - started)) s"
