#!/usr/bin/env bash
# Installs the real peers the tests start: redis-server (Debian's package), LLMFlow 0.4.1 on
# Bun (npm packages, pinned in test/peers/package-lock.json), and an OpenTelemetry Collector
# built from the official modules (test/collector/build.sh, cached outside the repo). Re-running
# is cheap: each step is skipped when what it installs is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "install-peers: installing redis-server (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  elif command -v sudo >/dev/null 2>&1; then
    echo "install-peers: installing redis-server (Debian package, with sudo)"
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "install-peers: the tests need redis-server on PATH: install it (apt-get install redis-server)" >&2
    exit 1
  fi
fi

stamp=test/peers/node_modules/.installed-from
want=$(sha256sum test/peers/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x test/peers/node_modules/.bin/bun ]; then
  echo "install-peers: installing LLMFlow and Bun into test/peers"
  # Bun's postinstall fetches nothing: it links the runtime from its platform package.
  npm ci --prefix test/peers --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# The Collector: built once per machine (several minutes cold), then reused.
bash test/collector/build.sh >/dev/null
