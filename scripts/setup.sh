#!/usr/bin/env bash
# Usage: scripts/setup.sh demo|test
# Installs what scripts/demo.sh (demo) or scripts/test.sh (test: everything) needs, when missing:
# Debian packages with apt-get (needs root), and for the tests the Python tools in the project's
# virtualenv .venv/ (never a system pip: Debian's python3 has none and PEP 668 forbids it).
# Safe to run again: installs nothing when all is there. Stops no process and starts no service:
# packages whose install would start one (unbound, prometheus, prometheus-alertmanager) are
# installed with a temporary /usr/sbin/policy-rc.d that refuses service starts.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
case "$what" in
  demo | test) ;;
  *)
    echo "usage: scripts/setup.sh demo|test" >&2
    exit 64
    ;;
esac

# Groups: "why" then the Debian packages (each line below is printed when it installs something).
groups=(
  "demo bed: network namespaces and veth ENIs, the VPC resolver, DNS load at an exact rate, dig, an IMDS stand-in|iproute2 unbound dnsperf bind9-dnsutils curl iputils-ping procps python3"
  "demo build: the Rust build links with the C toolchain|build-essential"
  "demo build: clang compiles the agent's eBPF tap (agent/src/sys/tap.bpf.c) for the bpf target|clang"
)
if [ "$what" = test ]; then
  groups+=(
    "test bed: packet ground truth, drops, ENA counters, a certificate, getent/setpriv|tcpdump nftables ethtool openssl libc-bin util-linux"
    "test rules and alerts: promtool, Prometheus and Alertmanager run by the rule and alert tests|prometheus prometheus-alertmanager"
    "test prefork servers: unicorn with raindrops beside gunicorn|unicorn ruby-raindrops"
    "test app servers: nginx in front of unicorn, php-fpm and Puma over unix sockets (issue 18)|nginx-light php-fpm puma"
    "test Passenger: Phusion Passenger Standalone (builtin engine) and passenger-status, the ground truth of its app groups (issue 18)|passenger"
    "test Python: the project's virtualenv (.venv/) is made with Debian's venv module|python3-venv"
    "test terminal: headroom-agent watch driven in a real terminal (send-keys, capture-pane)|tmux"
    "test browser: the collector's status page rendered and checked in headless Chromium|chromium"
    "test images: buildah builds both images from deploy/docker without Docker or a registry, podman runs them as the DaemonSet does (crun where the cgroups allow it, else runc)|buildah podman crun runc"
    "test network storage: storage-check on a real network filesystem, sshfs (FUSE) mounted in the test (issue 23)|sshfs"
    "test network storage: the sshd that sshfs talks to, run inside a namespace the test creates (issue 23)|openssh-server"
  )
fi

installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for g in "${groups[@]}"; do
  why=${g%%|*}
  read -r -a pkgs <<<"${g#*|}"
  need=()
  for p in "${pkgs[@]}"; do
    installed "$p" || need+=("$p")
  done
  if ((${#need[@]})); then
    echo "setup: ${why%%:*}: ${need[*]} (${why#*: })" >&2
    missing+=("${need[@]}")
  fi
done

policy=/usr/sbin/policy-rc.d
policy_ours=""
remove_policy() {
  if [ -n "$policy_ours" ] && grep -q 'headroom scripts/setup.sh' "$policy" 2>/dev/null; then
    rm -f "$policy"
  fi
}

if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${missing[*]}; run this script as root (it uses apt-get)" >&2
    exit 1
  fi
  # No service may start from these installs (a package's own unbound, prometheus…): the bed runs
  # its own daemons inside its namespaces. Only for this install, and only if no policy exists.
  if [ ! -e "$policy" ]; then
    trap remove_policy EXIT
    trap 'exit 130' INT TERM
    printf '#!/bin/sh\n# headroom scripts/setup.sh: no service starts during its apt-get install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    policy_ours=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  echo "setup: apt-get update and install (${#missing[@]} packages) …" >&2
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  remove_policy
  policy_ours=""
fi

[ "$what" = test ] || exit 0

# The project's virtualenv: Debian's python3 (not whatever python3 is first on PATH), the
# packages in scripts/requirements.txt; redone when that file or the interpreter changes.
venv=.venv
base_py=/usr/bin/python3
[ -x "$base_py" ] || base_py=$(command -v python3)
stamp="$venv/.headroom-requirements"
want="$(sha256sum scripts/requirements.txt | cut -d' ' -f1) $("$base_py" -c 'import sys; print(sys.version.split()[0])')"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python3" -c '' 2>/dev/null; then
  exit 0
fi
echo "setup: test Python: $(sed -e '/^#/d' -e 's/[=<>].*//' scripts/requirements.txt | tr '\n' ' ')into $venv/ (OTLP sender, prefork server, deploy checks; about a minute)" >&2
if ! "$venv/bin/python3" -c '' 2>/dev/null || [ "$("$venv/bin/python3" -c 'import sys; print(sys.version.split()[0])')" != "${want#* }" ]; then
  "$base_py" -m venv --clear "$venv"
fi
# PIP_* settings of this machine (index, certificates) apply; pip's own version check does not.
"$venv/bin/python3" -m pip install -q --disable-pip-version-check -r scripts/requirements.txt
echo "$want" >"$stamp"
