#!/usr/bin/env bash
# Installs skopeo from Debian if it is missing: imagecache's TestSkopeoPull
# copies images through the cache with it (and fails in CI without it).
set -euo pipefail
command -v skopeo >/dev/null && exit 0
if ! command -v apt-get >/dev/null; then
  echo "note: skopeo missing and no apt-get; TestSkopeoPull will skip (or fail when CI=true)" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo -n"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q skopeo >/dev/null 2>&1 || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q skopeo >/dev/null; }
skopeo --version
