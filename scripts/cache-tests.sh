#!/usr/bin/env bash
# Runs the public HTTP caching test suite (npm http-cache-tests, pinned)
# against the edge cache: its test origin on a free loopback port, the
# cache in front of it, the suite's CLI, scored with the suite's own result
# logic. Writes edgecache/testdata/cache-tests-results.json and fails below
# the threshold. Every step has a timeout.
#   CACHE_TESTS_MIN=N   required tests that must pass (default below)
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.4.5
# 157 pass here; the margin keeps a timing-sensitive test from failing CI while staying
# above the issue's target of 145.
MIN=${CACHE_TESTS_MIN:-152}
root=$(pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

command -v node >/dev/null || { echo "cache-tests: node (>= 20) is required" >&2; exit 1; }
(cd "$tmp" && timeout 180 npm install --silent --no-audit --no-fund --prefix "$tmp" "http-cache-tests@${VERSION}" >/dev/null 2>&1) \
  || { echo "cache-tests: npm install http-cache-tests@${VERSION} failed" >&2; exit 1; }
pkg="$tmp/node_modules/http-cache-tests"
go build -o "$tmp/canopy" ./cmd/canopy

freeport() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
oport=$(freeport)
cport=$(freeport)
(cd "$pkg" && npm_config_protocol=http npm_config_port="$oport" npm_config_pidfile="$tmp/server.pid" \
  exec timeout 280 node server/server.mjs >"$tmp/origin.log" 2>&1) &
pids+=($!)
timeout 280 "$tmp/canopy" cache serve --origin "http://localhost:${oport}" --listen "127.0.0.1:${cport}" \
  --dir "$tmp/store" >"$tmp/cache.log" 2>&1 &
pids+=($!)
for port in "$oport" "$cport"; do
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
done

(cd "$pkg" && npm_config_base="http://127.0.0.1:${cport}" npm_config_id="" npm_package_config_id="" \
  timeout 240 node --no-warnings cli.mjs >"$tmp/results.json" 2>"$tmp/cli.log") \
  || { echo "cache-tests: the suite's CLI failed"; cat "$tmp/cli.log"; exit 1; }
mkdir -p edgecache/testdata
node -e 'const fs=require("fs");const r=JSON.parse(fs.readFileSync(process.argv[1]));fs.writeFileSync(process.argv[2],JSON.stringify(r,null,2)+"\n")' \
  "$tmp/results.json" "$root/edgecache/testdata/cache-tests-results.json"
score=$(node "$root/scripts/cache-tests-score.mjs" "$pkg" "$tmp/results.json")
required=$(node -e 'console.log(JSON.parse(process.argv[1]).required)' "$score")
passed=$(node -e 'console.log(JSON.parse(process.argv[1]).passed)' "$score")
if [ -n "${CACHE_TESTS_VERBOSE:-}" ]; then node -e 'for (const n of JSON.parse(process.argv[1]).notes) console.log("  " + n)' "$score"; fi
echo "cache-tests: ${passed}/${required} required passed (threshold ${MIN})"
[ "$passed" -ge "$MIN" ] || { echo "cache-tests: below the threshold" >&2; exit 1; }
