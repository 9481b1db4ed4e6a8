#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks use, if missing: Debian packages for the
# test bed (iproute2, unbound, dnsperf, tcpdump, dig, promtool, ethtool, nftables, curl).
# Safe to run again; installs nothing when everything is there.
set -euo pipefail

declare -A pkg_for=(
  [ip]=iproute2 [unbound]=unbound [dnsperf]=dnsperf [tcpdump]=tcpdump [dig]=bind9-dnsutils
  [promtool]=prometheus [ethtool]=ethtool [nft]=nftables [curl]=curl [setpriv]=util-linux
  [sysctl]=procps [ping]=iputils-ping
)
missing=()
for tool in "${!pkg_for[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${missing[*]}; run this script as root (it uses apt-get)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# unbound's package may start a system instance; the bed runs its own inside namespaces.
pkill -x unbound 2>/dev/null || true
