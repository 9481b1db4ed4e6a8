#!/usr/bin/env bash
# Builds the agent and collector images locally (nothing is pushed), from deploy/docker/*.Dockerfile.
# Usage: scripts/images.sh [VERSION]           with a Docker engine: the Dockerfiles as they are
#                                              (the Rust image compiles, distroless runs)
#        scripts/images.sh --local [VERSION]   with buildah, no engine and no registry: the
#   binaries in BIN_DIR (default target/release; built with cargo --release when missing) on a
#   base made here, localhost/headroom-base:VERSION: the binaries' own shared libraries (glibc,
#   libgcc_s: what distroless/cc carries), the CA bundle and root/nonroot users on scratch. The
#   same Dockerfiles with BINARY=prebuilt RUNTIME=localhost/headroom-base:VERSION. Images are
#   localhost/headroom-{agent,collector}:VERSION in buildah's storage (CONTAINERS_STORAGE_CONF
#   picks another, as the image test does).
set -euo pipefail
cd "$(dirname "$0")/.."
local=""
if [ "${1:-}" = --local ]; then
  local=1
  shift
fi
version=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}

if [ -z "$local" ]; then
  if ! docker info >/dev/null 2>&1; then
    echo "images: no Docker engine reachable (docker info failed); start one, build elsewhere, or use --local (buildah)" >&2
    exit 1
  fi
  for c in agent collector; do
    docker build -f "deploy/docker/$c.Dockerfile" --build-arg VERSION="$version" -t "headroom-$c:$version" .
  done
  exit 0
fi

if ! command -v buildah >/dev/null; then
  echo "images: --local needs buildah (Debian package buildah; scripts/setup.sh test installs it)" >&2
  exit 1
fi
bin_dir=${BIN_DIR:-target/release}
for c in agent collector; do
  if [ ! -x "$bin_dir/headroom-$c" ]; then
    if [ -n "${BIN_DIR:-}" ]; then
      echo "images: no $bin_dir/headroom-$c (BIN_DIR)" >&2
      exit 1
    fi
    cargo build --release --locked -p "headroom-$c"
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The base: every shared library either binary loads, at the path the loader looks for it.
base="$work/base"
mkdir -p "$base/etc/ssl/certs" "$base/tmp"
chmod 1777 "$base/tmp"
for c in agent collector; do
  ldd "$bin_dir/headroom-$c" | grep -o '/[^ ]*' || true
done | sort -u | while read -r lib; do
  mkdir -p "$base$(dirname "$lib")"
  cp -L "$lib" "$base$lib"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  cp /etc/ssl/certs/ca-certificates.crt "$base/etc/ssl/certs/"
fi
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$base/etc/group"
printf 'FROM scratch\nCOPY . /\n' >"$work/base.Containerfile"
buildah bud --quiet -f "$work/base.Containerfile" -t "localhost/headroom-base:$version" "$base" >/dev/null

for c in agent collector; do
  ctx="$work/$c"
  mkdir -p "$ctx"
  cp "$bin_dir/headroom-$c" "$ctx/"
  buildah bud --quiet -f "deploy/docker/$c.Dockerfile" \
    --build-arg BINARY=prebuilt --build-arg RUNTIME="localhost/headroom-base:$version" \
    --build-arg VERSION="$version" -t "localhost/headroom-$c:$version" "$ctx" >/dev/null
  echo "images: localhost/headroom-$c:$version" >&2
done
