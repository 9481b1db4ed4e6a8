# headroom-collector: built in a Rust image, run on distroless as a non-root user.
# Build from the repository root: docker build -f deploy/docker/collector.Dockerfile --build-arg VERSION=0.1.0 .
# Without Docker or a registry (scripts/images.sh --local, buildah): BINARY=prebuilt and a
# locally made RUNTIME, as in agent.Dockerfile.
ARG RUST_VERSION=1.95
ARG RUNTIME=gcr.io/distroless/cc-debian12:nonroot
ARG BINARY=build
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p headroom-collector \
    && cp target/release/headroom-collector /headroom-collector

# A binary built outside (context: a directory holding headroom-collector).
FROM scratch AS prebuilt
COPY headroom-collector /headroom-collector

# hadolint ignore=DL3006
FROM ${BINARY} AS binary

# hadolint ignore=DL3006
FROM ${RUNTIME}
ARG VERSION=dev
LABEL org.opencontainers.image.title="headroom-collector" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://example.invalid/headroom"
COPY --from=binary /headroom-collector /usr/local/bin/headroom-collector
USER 65532:65532
EXPOSE 4317 4318 9464
ENTRYPOINT ["/usr/local/bin/headroom-collector"]
CMD ["--config", "/etc/headroom/collector.toml"]
