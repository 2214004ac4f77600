#!/usr/bin/env bash
# Installs a headless browser for the report test (tests/test_report.py): Debian's
# chromium package, with apt-get, when it is missing and apt is available. Without it
# the browser test is skipped (the rest of the suite does not need it).
set -euo pipefail
for name in chromium chromium-browser; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "setup-browser: $(command -v "$name") present"
        exit 0
    fi
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-browser: no chromium and no apt-get; the browser test will be skipped" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "setup-browser: not root and no sudo; the browser test will be skipped" >&2
        exit 0
    fi
fi
echo "setup-browser: installing chromium with apt-get"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium
