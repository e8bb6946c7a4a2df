#!/usr/bin/env bash
# Builds the test Collector (otelcol-ccbridge) from test/collector/builder-config.yaml with the
# OpenTelemetry Collector Builder, once per machine: the binary is cached outside the repo at
#   ${CCBRIDGE_CACHE:-$HOME/.cache/ccbridge}/otelcol-<hash of builder-config.yaml>/otelcol-ccbridge
# and later runs only print its path. Needs Go and the Go module proxy (first run only; a cold
# build takes several minutes on 2 cores). Progress goes to stderr; the last line of stdout is
# the binary's path. Safe to run concurrently: a lock serialises builds of the same manifest.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
manifest="$here/builder-config.yaml"
cache_root="${CCBRIDGE_CACHE:-${HOME:?HOME is not set}/.cache/ccbridge}"

log() { echo "collector/build.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -f "$manifest" ] || die "manifest not found: $manifest"
# Go's usual install place, for shells whose PATH lacks it.
command -v go >/dev/null 2>&1 || [ ! -x /usr/local/go/bin/go ] || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || die "go is not on PATH (the Collector is built from source with Go)"

# The builder version lives in the manifest (a '# ocb-version: vX.Y.Z' line) so the hash below
# covers it too.
ocb_version=$(sed -n 's/^# ocb-version:[[:space:]]*\(v[0-9][0-9.]*\)[[:space:]]*$/\1/p' "$manifest" | head -n1)
[ -n "$ocb_version" ] || die "no '# ocb-version: vX.Y.Z' line in $manifest"

hash=$(sha256sum "$manifest" | cut -c1-16)
dist_dir="$cache_root/otelcol-$hash"
binary="$dist_dir/otelcol-ccbridge"

usable() { [ -x "$binary" ] && "$binary" --version >/dev/null 2>&1; }

if usable; then
  log "using cached $binary"
  echo "$binary"
  exit 0
fi

mkdir -p "$cache_root" || die "cannot create cache dir $cache_root"

# Serialise concurrent builds (parallel test workers); the loser of the race reuses the result.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache_root/.otelcol-$hash.lock"
  log "taking the build lock (waits while another run builds)"
  flock 9 || die "cannot take the lock $cache_root/.otelcol-$hash.lock"
  if usable; then
    log "built meanwhile by another run: $binary"
    echo "$binary"
    exit 0
  fi
fi

# 1. The builder itself, installed into the cache (not into ~/go/bin).
ocb_dir="$cache_root/ocb-$ocb_version"
ocb="$ocb_dir/builder"
if [ ! -x "$ocb" ]; then
  log "installing go.opentelemetry.io/collector/cmd/builder@$ocb_version into $ocb_dir"
  GOBIN="$ocb_dir" go install "go.opentelemetry.io/collector/cmd/builder@$ocb_version" >&2 \
    || die "go install go.opentelemetry.io/collector/cmd/builder@$ocb_version failed"
  [ -x "$ocb" ] || die "go install succeeded but $ocb is missing"
fi

# 2. The Collector. Build into a scratch dir and rename it into place when done, so an
#    interrupted build never leaves a half-made cache entry behind.
work="$dist_dir.tmp.$$"
rm -rf "$work"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work"
# The manifest's output_path is a placeholder: point it at the scratch dir.
sed "s|^\([[:space:]]*output_path:\).*|\1 $work|" "$manifest" > "$work/builder-config.yaml"
grep -q "output_path: $work\$" "$work/builder-config.yaml" || die "no dist.output_path line to rewrite in $manifest"

log "building otelcol-ccbridge with ocb $ocb_version (first run: several minutes) in $work"
start=$(date +%s)
if ! "$ocb" --config="$work/builder-config.yaml" >&2; then
  die "the OpenTelemetry Collector Builder failed (see its output above); manifest: $manifest"
fi
[ -x "$work/otelcol-ccbridge" ] || die "the builder finished but produced no $work/otelcol-ccbridge"
"$work/otelcol-ccbridge" --version >&2 || die "the built binary does not run: $work/otelcol-ccbridge"

rm -rf "$dist_dir"
mv "$work" "$dist_dir" || die "cannot move $work to $dist_dir"
trap - EXIT
# Keep the manifest copy truthful about where its output now lives.
sed -i "s|^\([[:space:]]*output_path:\).*|\1 $dist_dir|" "$dist_dir/builder-config.yaml"
log "built $binary in $(( $(date +%s) - start ))s"
echo "$binary"
