# headroom-collector: built in a Rust image, run on distroless as a non-root user.
# Build from the repository root: docker build -f deploy/docker/collector.Dockerfile --build-arg VERSION=0.1.0 .
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p headroom-collector \
    && cp target/release/headroom-collector /headroom-collector

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="headroom-collector" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://example.invalid/headroom"
COPY --from=build /headroom-collector /usr/local/bin/headroom-collector
USER 65532:65532
EXPOSE 4317 4318 9464
ENTRYPOINT ["/usr/local/bin/headroom-collector"]
CMD ["--config", "/etc/headroom/collector.toml"]
