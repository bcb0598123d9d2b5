#!/usr/bin/env bash
# `make bench` scores the console's pages with Lighthouse: node and npm from Debian, and
# lighthouse at the pinned version in .tools/lighthouse (never a global npm install, so
# nothing outside the checkout changes and `make clean` removes it).
# Quick when the pinned version is there; otherwise it installs and says so.
# Usage: bench/ensure-lighthouse.sh VERSION
set -euo pipefail

VERSION=${1:?usage: bench/ensure-lighthouse.sh VERSION}
cd "$(dirname "$0")/.."
PREFIX=.tools/lighthouse
INSTALLED=$PREFIX/node_modules/lighthouse/package.json

apt=(apt-get)
if [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null; then
    apt=(sudo apt-get)
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if ! command -v apt-get >/dev/null; then
        echo "lighthouse: node and npm are missing and there is no apt-get here; install them first" >&2
        exit 1
    fi
    started=$SECONDS
    echo "lighthouse: node or npm is missing; installing nodejs and npm with ${apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
        echo "lighthouse: no apt package lists yet: ${apt[*]} update"
        "${apt[@]}" update -q
    fi
    if ! "${apt[@]}" install -y -q nodejs npm; then
        echo "lighthouse: install failed; updating the package lists and trying again"
        "${apt[@]}" update -q
        "${apt[@]}" install -y -q nodejs npm
    fi
    echo "lighthouse: node $(node --version) and npm $(npm --version) installed" \
        "in $((SECONDS - started)) s"
fi

have=""
if [[ -f "$INSTALLED" ]]; then
    have=$(node -p "require('./$INSTALLED').version")
fi
if [[ "$have" == "$VERSION" && -x "$PREFIX/node_modules/.bin/lighthouse" ]]; then
    exit 0
fi

started=$SECONDS
echo "lighthouse: installing lighthouse@$VERSION into $PREFIX${have:+ (found $have)}" \
    "with npm $(npm --version), node $(node --version)"
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --save-exact --no-audit --no-fund --loglevel=error \
    "lighthouse@$VERSION"
echo "lighthouse: $("$PREFIX/node_modules/.bin/lighthouse" --version) installed" \
    "in $((SECONDS - started)) s"
