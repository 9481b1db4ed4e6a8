#!/usr/bin/env bash
# The main job, on one machine: builds an EC2-shaped bed in network namespaces (a node with two
# ENIs, a VPC with unbound on the resolver addresses), drives DNS load through it near the
# 1024 packets/s link-local limit, and shows what headroom-agent measures next to the load
# tool's own count. Needs root (network namespaces, packet sockets). Installs only what the
# demo uses (scripts/setup.sh demo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
if [ ! -x target/release/headroom-demo ]; then
  echo "demo: first build of headroom-agent and headroom-demo (release): 5 to 15 minutes on a 2-core machine (cargo shows its progress)" >&2
fi
cargo build --release --locked -p headroom-agent -p headroom-benches
exec target/release/headroom-demo "$@"
