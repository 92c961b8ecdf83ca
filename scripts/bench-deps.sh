#!/usr/bin/env bash
# Install the Debian packages that `make bench` needs: the comparison
# proxies (nghttpx, nginx, HAProxy), the load generators (h2load, wrk) and
# the profilers used by hand (perf, strace, valgrind). Not part of
# `make test`. Idempotent like scripts/deps.sh: apt is only called when
# something is missing.
#
# The Debian nginx and haproxy packages enable and start a system service on
# install; the benchmark never uses it (it starts its own instances on free
# loopback ports), so a service started here is stopped again.
set -euo pipefail

PKGS=(
  nghttp2-proxy     # nghttpx
  nghttp2-client    # h2load
  nginx             # 1.22: http2 cleartext, limit_req, upstream keepalive
  haproxy           # 2.6: h2c frontend, stick tables, http-reuse
  wrk
  python3
  linux-perf strace valgrind
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

echo "bench-deps: installing ${missing[*]}" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101 keeps dpkg from starting services where invoke-rc.d is
# used; without systemd that is the case here. Only written if absent.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
