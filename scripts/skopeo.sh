#!/usr/bin/env bash
# Installs the real registry clients imagecache's end-to-end tests pull
# through the cache with, from Debian, if they are missing: skopeo
# (TestSkopeoPull) and containerd with ctr (TestContainerdPull). The tests
# fail in CI without them.
set -euo pipefail
need=()
command -v skopeo >/dev/null || need+=(skopeo)
{ command -v containerd >/dev/null && command -v ctr >/dev/null; } || need+=(containerd)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "note: ${need[*]} missing and no apt-get; the client tests will skip (or fail when CI=true)" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo -n"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${need[@]}" >/dev/null; }
skopeo --version
ctr --version
