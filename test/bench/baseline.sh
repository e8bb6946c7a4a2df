#!/usr/bin/env bash
# Builds another commit of this repository beside the checkout, for the bench to run its bridge
# next to this one's (worker-cost.ts): `git archive COMMIT` extracted outside the repo at
#   ${CCBRIDGE_CACHE:-$HOME/.cache/ccbridge}/baseline-<commit>/
# then `npm ci` (from npm's cache: the same lock as a checkout of that commit) and `npm run build`,
# once per commit; later runs only print its path. Usage: baseline.sh [COMMIT] (default
# $BENCH_BASELINE, else 3e660a1). Progress goes to stderr; the last line of stdout is the path.
# Safe to run concurrently: a lock serialises builds of the same commit.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)
cache_root="${CCBRIDGE_CACHE:-${HOME:?HOME is not set}/.cache/ccbridge}"
wanted="${1:-${BENCH_BASELINE:-3e660a1}}"

log() { echo "bench/baseline.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

commit=$(git -C "$repo" rev-parse --verify --quiet "$wanted^{commit}") || die "no commit $wanted in $repo"
dir="$cache_root/baseline-${commit:0:12}"
ready="$dir/.ccbridge-baseline-ready"

if [ -f "$ready" ]; then
  log "using cached $dir ($wanted)"
  echo "$dir"
  exit 0
fi

mkdir -p "$cache_root" || die "cannot create cache dir $cache_root"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/.baseline-${commit:0:12}.lock"
  log "taking the build lock (waits while another run builds)"
  flock 9 || die "cannot take the lock"
  if [ -f "$ready" ]; then
    log "built meanwhile by another run: $dir"
    echo "$dir"
    exit 0
  fi
fi

rm -rf "$dir"
mkdir -p "$dir"
log "extracting $wanted (${commit:0:12}) into $dir"
git -C "$repo" archive "$commit" | tar -x -C "$dir"
log "npm ci (from npm's cache where it can), then npm run build"
(cd "$dir" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >&2 && npm run build >&2) \
  || die "building $wanted failed (left in $dir)"
[ -f "$dir/services/bridge/dist/main.js" ] || die "no services/bridge/dist/main.js after the build"
echo "$commit" >"$ready"
log "built $dir"
echo "$dir"
