#!/usr/bin/env bash
# The console's browser tests (and Lighthouse) drive Debian's chromium: Playwright's own
# browser downloads are never used, so CI and a laptop run the same packaged build.
# fonts-liberation is installed with it because a page's widths depend on the fonts it gets:
# with no metric-compatible Arial/Helvetica the phone-width checks would measure other text.
# Quick when everything is there (two dpkg look-ups); on a fresh Debian machine it installs
# with apt-get (as root, or through sudo) and says so.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
PACKAGES=(chromium fonts-liberation)

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
    [[ -x "$CHROMIUM" ]] && exit 0 # not Debian, but a chromium is there: the tests can run
    echo "chromium: $CHROMIUM is missing and there is no apt-get here;" \
        "install chromium (and fonts-liberation) first" >&2
    exit 1
fi
missing=()
for package in "${PACKAGES[@]}"; do
    installed "$package" || missing+=("$package")
done
if [[ -x "$CHROMIUM" && ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

apt=(apt-get)
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null; then
        echo "chromium: ${missing[*]} must be installed with apt-get, which needs root (no sudo here)" >&2
        exit 1
    fi
    apt=(sudo apt-get)
fi
export DEBIAN_FRONTEND=noninteractive

started=$SECONDS
echo "chromium: installing ${missing[*]} with ${apt[*]} (the browser tests drive $CHROMIUM)"
# A fresh image often has no package lists yet; otherwise try the lists there first.
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
    echo "chromium: no apt package lists yet: ${apt[*]} update"
    "${apt[@]}" update -q
fi
if ! "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}"; then
    echo "chromium: install failed; updating the package lists and trying again"
    "${apt[@]}" update -q
    "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}"
fi
if [[ ! -x "$CHROMIUM" ]]; then
    echo "chromium: apt-get finished but $CHROMIUM is still missing" >&2
    exit 1
fi
echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM") installed" \
    "in $((SECONDS - started)) s"
