# headroom-agent: built in a Rust image, run on distroless (glibc, no shell).
# Build from the repository root: docker build -f deploy/docker/agent.Dockerfile --build-arg VERSION=0.1.0 .
# Without Docker or a registry (scripts/images.sh --local, buildah): BINARY=prebuilt takes a
# binary built on the host from the build context, RUNTIME names a base made locally (the
# binary's own glibc libraries on scratch, as distroless/cc carries them).
ARG RUST_VERSION=1.95
ARG RUNTIME=gcr.io/distroless/cc-debian12:latest
ARG BINARY=build
FROM rust:${RUST_VERSION}-bookworm AS build
# clang compiles the eBPF tap (agent/src/sys/tap.bpf.c) in the agent's build script; Debian 12's.
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang=1:14.0-55.7~deb12u1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p headroom-agent \
    && cp target/release/headroom-agent /headroom-agent

# A binary built outside (context: a directory holding headroom-agent).
FROM scratch AS prebuilt
COPY headroom-agent /headroom-agent

# hadolint ignore=DL3006
FROM ${BINARY} AS binary

# The agent runs as root with a few added capabilities (see deploy/base/agent-daemonset.yaml):
# the eBPF tap (or packet sockets) and reading other processes' /proc entries need them; distroless/cc has no shell or package manager to misuse.
# distroless publishes no version tags; pin by digest at release time.
# hadolint ignore=DL3006,DL3007
FROM ${RUNTIME}
ARG VERSION=dev
LABEL org.opencontainers.image.title="headroom-agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://example.invalid/headroom"
COPY --from=binary /headroom-agent /usr/local/bin/headroom-agent
ENTRYPOINT ["/usr/local/bin/headroom-agent"]
CMD ["run", "--config", "/etc/headroom/agent.toml"]
