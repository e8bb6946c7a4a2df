#!/usr/bin/env bash
# Makes a Docker engine with Compose v2 answer, for the compose test (test/integration/
# compose.test.ts). With an engine already answering (a developer's Docker), nothing is done and
# the real images are used. Otherwise, where ../shared/compose/prepare.sh exists (these CI
# machines: no engine, no Docker Hub), it starts one and builds stand-ins for the base images
# (read ../shared/compose/README.md). Prints the engine's state on its last line.
set -uo pipefail
cd "$(dirname "$0")/../.."

if docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
  echo "compose-engine: an engine answers"
  exit 0
fi
# ../shared/compose beside the checkout; for a clone (`git clone . $(mktemp -d)/c`, as CI
# makes one), beside the repository it was cloned from.
prepare=
origin=$(cd "$(git remote get-url origin 2>/dev/null || echo /nonexistent)" 2>/dev/null && pwd -P || true)
for dir in .. "${origin:+$(dirname "$origin")}"; do
  if [ -n "$dir" ] && [ -f "$dir/shared/compose/prepare.sh" ]; then prepare=$dir/shared/compose/prepare.sh; break; fi
done
if [ -z "$prepare" ]; then
  echo "compose-engine: no Docker engine answers and there is no shared/compose/prepare.sh beside the checkout to start one"
  exit 0
fi
echo "compose-engine: starting an engine with $prepare (minutes the first time on a machine)"
if out=$(bash "$prepare" . 2>&1); then
  echo "$out" | sed 's/^/  /'
  exit 0
fi
echo "$out" | sed 's/^/  /'
# prepare.sh takes every `image:` of the compose file for a base image; the bridge's own image
# (built by bridge-ingest, run by bridge-worker too) is built by compose, not pulled: not missing.
missing=$(echo "$out" | sed -n 's/.*ERROR: no stand-in for: //p' | tail -1)
built=$(docker compose config --format json 2>/dev/null | node -e '
  const c = JSON.parse(require("fs").readFileSync(0, "utf8"));
  for (const s of Object.values(c.services)) if (s.build && s.image) console.log(s.image);')
for image in $missing; do
  if ! grep -qx "$image" <<<"$built"; then
    echo "compose-engine: prepare.sh failed: no stand-in for $image" >&2
    exit 1
  fi
done
if [ -z "$missing" ] || ! docker info >/dev/null 2>&1; then
  echo "compose-engine: prepare.sh failed" >&2
  exit 1
fi
echo "compose-engine: up (images the compose file builds itself, not stand-ins: $missing)"
