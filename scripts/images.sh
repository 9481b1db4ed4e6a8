#!/usr/bin/env bash
# Builds the agent and collector images locally (nothing is pushed).
# Usage: scripts/images.sh [VERSION]   (needs a Docker engine)
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}
if ! docker info >/dev/null 2>&1; then
  echo "images: no Docker engine reachable (docker info failed); start one or build elsewhere" >&2
  exit 1
fi
for c in agent collector; do
  docker build -f "deploy/docker/$c.Dockerfile" --build-arg VERSION="$version" -t "headroom-$c:$version" .
done
