#!/usr/bin/env bash
# Installs Debian's Chromium, which the report test (tests/integration/debugging.rs) uses to
# open out/<target>/verify/report.html headless, screenshot it and read its console errors.
# Does nothing when /usr/bin/chromium is already there. Needs root (or sudo) for apt-get.
set -euo pipefail
if [ -x /usr/bin/chromium ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    run() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
    run() { sudo "$@"; }
else
    echo "setup-browser.sh: Chromium is missing; install Debian's 'chromium' package as root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
run apt-get update -qq
run apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]
