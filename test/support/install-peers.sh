#!/usr/bin/env bash
# Installs the real peers the tests start: redis-server and docker-compose (Debian's packages;
# docker-compose only checks the compose files, no Docker engine is needed), LLMFlow 0.4.1 on
# Bun and Claude Code (npm packages, pinned in test/peers/package-lock.json), and an
# OpenTelemetry Collector built from the official modules (test/collector/build.sh, cached
# outside the repo). Re-running is cheap: each step is skipped when what it installs is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

# need COMMAND PACKAGE: installs the Debian package when the command is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-peers: the tests need $1 on PATH: install it (apt-get install $2)" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "install-peers: installing $2 (Debian package)"
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need redis-server redis-server
need docker-compose docker-compose

stamp=test/peers/node_modules/.installed-from
want=$(sha256sum test/peers/package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x test/peers/node_modules/.bin/bun ]; then
  echo "install-peers: installing the npm peers (LLMFlow, Bun, Claude Code) into test/peers"
  # Their postinstall steps fetch nothing: each links a binary from its platform package.
  npm ci --prefix test/peers --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# The Collector: built once per machine (several minutes cold), then reused.
bash test/collector/build.sh >/dev/null

# A Docker engine with Compose v2 for the compose test, where one can be had.
bash test/support/compose-engine.sh
