#!/usr/bin/env bash
# Install the Debian packages sluice needs. Idempotent: packages already
# present are left alone; apt is only called when something is missing.
#
#   scripts/deps.sh           build, test and demo (the Makefile, README.md
#                             and .ci/run all use this, so all three install
#                             exactly the same set)
#   scripts/deps.sh --bench   also what `make bench` compares against and
#                             profiles with: nghttpx, nginx, HAProxy, wrk,
#                             perf, strace, valgrind (not part of make test)
set -euo pipefail

PKGS=(
  build-essential pkg-config
  libnghttp2-dev libev-dev libssl-dev libyaml-dev node-llhttp
  libcmocka-dev
  libhiredis-dev            # the Redis client of fleet-wide limits (proxy/global/)
  redis-server              # test_global_limit.py starts its own on loopback ports
  curl nghttp2-client openssl
  python3-pytest python3-h2 python3-websockets python3-aiohttp
  prometheus python3-yaml   # promtool, and PyYAML for test_chart.py / deploy/check_manifests.py
  podman                    # make image; test_image.py builds the image with it
)
BENCH_PKGS=(
  nghttp2-proxy     # nghttpx
  nginx             # 1.22: http2 cleartext, limit_req, upstream keepalive
  haproxy           # 2.6: h2c frontend, stick tables, http-reuse
  wrk
  linux-perf strace valgrind
)
bench=0
if [ "${1:-}" = "--bench" ]; then
  bench=1
  PKGS+=("${BENCH_PKGS[@]}")
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive

# The Debian nginx and haproxy packages start a system service on install;
# the benchmark never uses it (it starts its own instances on free loopback
# ports). A policy-rc.d answering 101 keeps dpkg from starting services;
# it is only written if absent, and removed again.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ "$bench" = 1 ] && [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
