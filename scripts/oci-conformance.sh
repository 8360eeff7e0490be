#!/usr/bin/env bash
# Runs the OCI distribution-spec conformance suite (pull side, read-only
# mode) against the image cache: Debian's docker-registry is the upstream,
# preloaded over HTTP with an image, a Docker manifest, an index, an artifact
# with a subject (and its referrers fallback tag); `canopy images serve`
# caches it. The suite runs once with the upstream up, then again with the
# upstream stopped. The verdict is the suite's printed result line ("OCI
# Conformance Result: Pass"), not its exit code. Bounded, cleans up.
#   CONFORMANCE_VERSION  pseudo-version of the suite's Go module
set -euo pipefail
cd "$(dirname "$0")/.."

CONFORMANCE_VERSION=${CONFORMANCE_VERSION:-v0.0.0-20260831232431-97274622c111}
MODULE=github.com/opencontainers/distribution-spec/conformance
REPO=conformance/repo1

work=$(mktemp -d /tmp/canopy-oci-conformance.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf -- '-- %s\n' "$*"; }
die() { echo "oci-conformance: $*" >&2; exit 1; }

# -- tools: docker-registry (Debian), the suite (built from the pinned module), canopy
if ! command -v docker-registry >/dev/null; then
  command -v apt-get >/dev/null || die "docker-registry missing and no apt-get"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q docker-registry >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q docker-registry >/dev/null; }
fi
mkdir -p "$work/suite"
(cd "$work/suite" && printf 'module canopy-oci-conformance\n\ngo 1.24\n' > go.mod &&
  GOFLAGS=-mod=mod timeout 300 go get "$MODULE@$CONFORMANCE_VERSION" >/dev/null 2>&1 &&
  GOFLAGS=-mod=mod timeout 300 go build -o "$work/conformance" "$MODULE") ||
  die "could not build $MODULE@$CONFORMANCE_VERSION"
timeout 300 go build -o "$work/canopy" ./cmd/canopy

free_port() { # a loopback port nothing listens on
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/" 2>/dev/null || { [ $? = 7 ] && echo "$p" && return 0; }
  done
  die "no free port"
}
wait_http() { # URL: until it answers, 20 s at most
  for _ in $(seq 200); do curl -s -o /dev/null --max-time 1 "$1" && return 0; sleep 0.1; done
  return 1
}

# -- the upstream
up_port=$(free_port)
mkdir -p "$work/registry"
cat > "$work/registry.yml" <<EOF
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $work/registry}
  delete: {enabled: false}
http:
  addr: 127.0.0.1:$up_port
EOF
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
up_pid=$!
pids+=("$up_pid")
UP=http://127.0.0.1:$up_port
wait_http "$UP/v2/" || { cat "$work/registry.log"; die "docker-registry did not start"; }

# -- test content, pushed over HTTP
sha() { sha256sum "$1" | cut -d' ' -f1; }
push_blob() { # FILE → prints its digest
  local d loc
  d=sha256:$(sha "$1")
  loc=$(curl -sf --max-time 10 -X POST -D - -o /dev/null "$UP/v2/$REPO/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  [ -n "$loc" ] || die "blob upload not started"
  case "$loc" in http*) ;; *) loc=$UP$loc ;; esac
  case "$loc" in *\?*) loc="$loc&digest=$d" ;; *) loc="$loc?digest=$d" ;; esac
  curl -sf --max-time 30 -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" "$loc" >/dev/null || die "blob $d not pushed"
  echo "$d"
}
push_manifest() { # FILE MEDIATYPE REF → prints its digest
  local d
  d=sha256:$(sha "$1")
  curl -sf --max-time 10 -X PUT -H "Content-Type: $2" --data-binary "@$1" "$UP/v2/$REPO/manifests/$3" >/dev/null ||
    die "manifest $3 ($2) not pushed"
  echo "$d"
}
size() { stat -c %s "$1"; }
c=$work/content
mkdir -p "$c"
head -c 300000 /dev/urandom | gzip -1 > "$c/layer1"
head -c 120000 /dev/urandom | gzip -1 > "$c/layer2"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$c/config"
printf '{}' > "$c/empty"
printf 'signature payload for the conformance run' > "$c/sig"
layer1=$(push_blob "$c/layer1"); layer2=$(push_blob "$c/layer2")
config=$(push_blob "$c/config"); empty=$(push_blob "$c/empty"); sig=$(push_blob "$c/sig")
OCI_M=application/vnd.oci.image.manifest.v1+json
OCI_I=application/vnd.oci.image.index.v1+json
DOCKER_M=application/vnd.docker.distribution.manifest.v2+json
layers="{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$layer1\",\"size\":$(size "$c/layer1")},{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$layer2\",\"size\":$(size "$c/layer2")}"
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
  "$OCI_M" "$config" "$(size "$c/config")" "$layers" > "$c/image"
image=$(push_manifest "$c/image" "$OCI_M" v1)
dlayers=${layers//application\/vnd.oci.image.layer.v1.tar+gzip/application\/vnd.docker.image.rootfs.diff.tar.gzip}
printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
  "$DOCKER_M" "$config" "$(size "$c/config")" "$dlayers" > "$c/docker"
docker=$(push_manifest "$c/docker" "$DOCKER_M" docker)
printf '{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"%s","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"}}]}' \
  "$OCI_I" "$OCI_M" "$image" "$(size "$c/image")" > "$c/index"
index=$(push_manifest "$c/index" "$OCI_I" multi)
ATYPE=application/vnd.example.signature
printf '{"schemaVersion":2,"mediaType":"%s","artifactType":"%s","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/octet-stream","digest":"%s","size":%s}],"subject":{"mediaType":"%s","digest":"%s","size":%s},"annotations":{"org.example.kind":"signature"}}' \
  "$OCI_M" "$ATYPE" "$empty" "$sig" "$(size "$c/sig")" "$OCI_M" "$image" "$(size "$c/image")" > "$c/artifact"
artifact=$(push_manifest "$c/artifact" "$OCI_M" "sha256:$(sha "$c/artifact")")
# docker-registry 2.8 has no referrers API: clients use the tag schema.
printf '{"schemaVersion":2,"mediaType":"%s","manifests":[{"mediaType":"%s","artifactType":"%s","digest":"%s","size":%s,"annotations":{"org.example.kind":"signature"}}]}' \
  "$OCI_I" "$OCI_M" "$ATYPE" "$artifact" "$(size "$c/artifact")" > "$c/referrers"
push_manifest "$c/referrers" "$OCI_I" "sha256-${image#sha256:}" >/dev/null
say "upstream docker-registry at $UP holds $REPO: v1 ($image), docker, multi, an artifact referring to v1"

# -- the cache
cache_port=$(free_port)
CACHE=127.0.0.1:$cache_port
"$work/canopy" images serve --dir "$work/node" --listen "$CACHE" --upstream "$UP" \
  --tag-deadline 300ms --upstream-timeout 2s > "$work/cache.log" 2>&1 &
pids+=("$!")
wait_http "http://$CACHE/v2/" || { cat "$work/cache.log"; die "canopy images serve did not start"; }

run_suite() { # LABEL
  local out=$work/suite-$1.txt
  ( cd "$work" &&
    OCI_REGISTRY=$CACHE OCI_TLS=disabled OCI_REPO1=$REPO OCI_REPO2=conformance/repo2 \
    OCI_API_PUSH=false OCI_API_BLOBS_DELETE=false OCI_API_MANIFESTS_DELETE=false OCI_API_TAGS_DELETE=false \
    OCI_API_BLOBS_MOUNT_ANONYMOUS=false OCI_DATA_SHA512=false \
    OCI_RO_DATA_TAGS="v1 docker multi" \
    OCI_RO_DATA_MANIFESTS="$image $docker $index $artifact" \
    OCI_RO_DATA_BLOBS="$layer1 $layer2 $config $empty $sig" \
    OCI_RO_DATA_REFERRERS="$image" \
    OCI_RESULTS_DIR="$work/results-$1" OCI_LOG=warn \
    timeout 60 ./conformance ) > "$out" 2>&1 || true
  local line
  line=$(grep -E '^OCI Conformance Result:' "$out" | tail -1 || true)
  say "$1: ${line:-no result line}"
  if [ "$line" != "OCI Conformance Result: Pass" ]; then
    sed -n '1,/^Configuration:/p' "$out" | grep -vE ': (Pass|Disabled|Skip)$' | head -60
    return 1
  fi
  sed -n '/^OCI Conformance Result/,/^$/p; /^API conformance:/,/^$/p' "$out" | grep -v '^$' | sed 's/^/   /'
}

status=0
run_suite upstream-up || status=1
kill "$up_pid"; wait "$up_pid" 2>/dev/null || true
curl -s -o /dev/null --max-time 1 "$UP/v2/" && die "upstream still answering"
run_suite upstream-down || status=1
if [ "$status" = 0 ]; then
  say "conformance: pull workflow passes with the upstream up and stopped"
else
  echo "oci-conformance: FAILED" >&2
fi
exit "$status"
