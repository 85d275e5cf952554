#!/bin/sh
# Installs what the VS Code end-to-end test needs, outside the repository:
# Debian's chromium and ripgrep (apt, only if missing), then code-server (VS Code's
# web build) and playwright-core from npm into $RETRACE_E2E_CACHE (default
# ~/.cache/retrace-e2e). A second run finds everything in place and does nothing.
set -eu
CACHE=${RETRACE_E2E_CACHE:-$HOME/.cache/retrace-e2e}
CODE_SERVER_VERSION=4.100.3
PLAYWRIGHT_VERSION=1.56.1

missing=""
command -v chromium >/dev/null || missing="$missing chromium"
command -v rg >/dev/null || missing="$missing ripgrep"
[ -e /usr/include/gssapi/gssapi.h ] || missing="$missing libkrb5-dev"
command -v g++ >/dev/null || missing="$missing build-essential"
if [ -n "$missing" ]; then
    echo "e2e setup: apt-get install$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

if [ -f "$CACHE/done-$CODE_SERVER_VERSION-$PLAYWRIGHT_VERSION" ]; then
    exit 0
fi
mkdir -p "$CACHE"
# @vscode/ripgrep's postinstall downloads a binary from GitHub; it takes a cached
# archive first. The version and asset name come from code-server's npm-shrinkwrap.json.
RG_CACHE="${TMPDIR:-/tmp}/vscode-ripgrep-cache-1.15.11"
RG_ASSET="$RG_CACHE/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
if [ ! -f "$RG_ASSET" ]; then
    mkdir -p "$RG_CACHE"
    staging=$(mktemp -d)
    cp "$(command -v rg)" "$staging/rg"
    tar -czf "$RG_ASSET" -C "$staging" rg
    rm -rf "$staging"
fi
echo "e2e setup: npm install code-server@$CODE_SERVER_VERSION playwright-core@$PLAYWRIGHT_VERSION into $CACHE"
npm_config_yes=true npm_config_nodedir=/usr npm install --prefix "$CACHE" --unsafe-perm \
    --no-audit --no-fund --loglevel=error \
    "code-server@$CODE_SERVER_VERSION" "playwright-core@$PLAYWRIGHT_VERSION"
touch "$CACHE/done-$CODE_SERVER_VERSION-$PLAYWRIGHT_VERSION"
