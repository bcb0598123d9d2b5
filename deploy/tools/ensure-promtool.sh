#!/usr/bin/env bash
# `make rules-check` runs the alert rules through promtool, from Debian's `prometheus`
# package (the server's unit is not started by it here: policy-rc.d or no systemd).
# Quick when promtool is there; otherwise it installs with apt-get (as root, or through
# sudo) and says so.
set -euo pipefail

if command -v promtool >/dev/null; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "promtool: missing and there is no apt-get here; install Prometheus' promtool first" >&2
    exit 1
fi
apt=(apt-get)
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null; then
        echo "promtool: the prometheus package must be installed with apt-get, which needs root (no sudo here)" >&2
        exit 1
    fi
    apt=(sudo apt-get)
fi
export DEBIAN_FRONTEND=noninteractive

started=$SECONDS
echo "promtool: installing Debian's prometheus package with ${apt[*]} (it carries promtool)"
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    echo "promtool: no apt package lists yet: ${apt[*]} update"
    "${apt[@]}" update -q
fi
if ! "${apt[@]}" install -y -q --no-install-recommends prometheus; then
    echo "promtool: install failed; updating the package lists and trying again"
    "${apt[@]}" update -q
    "${apt[@]}" install -y -q --no-install-recommends prometheus
fi
if ! command -v promtool >/dev/null; then
    echo "promtool: apt-get finished but promtool is still missing" >&2
    exit 1
fi
echo "promtool: $(promtool --version 2>&1 | head -1) installed in $((SECONDS - started)) s"
