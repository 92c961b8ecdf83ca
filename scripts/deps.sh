#!/usr/bin/env bash
# Install the Debian packages sluice needs to build, test and demo.
# Idempotent: packages already present are left alone; apt is only called
# when something is missing. Used by the Makefile (make deps/demo/test),
# README.md and .ci/run, so all three install exactly the same set.
set -euo pipefail

PKGS=(
  build-essential pkg-config
  libnghttp2-dev libev-dev libssl-dev libyaml-dev node-llhttp
  libcmocka-dev
  curl nghttp2-client openssl
  python3-pytest python3-h2 python3-websockets python3-aiohttp
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
