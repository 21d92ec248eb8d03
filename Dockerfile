# syntax=docker/dockerfile:1
#
# The Bulkhead image: one static-ish binary on `scratch` (ADR 0014).
#
#   docker build -t bulkhead .                       # release build from source
#   podman build --format docker -t bulkhead .       # the same with podman (keeps HEALTHCHECK)
#
# Stages: `chef` (toolchain and cargo-chef) → `planner` (the dependency recipe) → `builder`
# (dependencies cooked in their own cached layer, then the release build, then the runtime
# root filesystem assembled by scripts/container-rootfs.sh) → `runtime` (what ships).
#
# `runtime` copies its root filesystem from the stage `rootfs-${ROOTFS}`. By default that is
# the builder's. `--build-arg ROOTFS=prebuilt` takes a `rootfs/` directory from the build
# context instead, made on the host by scripts/container-rootfs.sh from a binary built there:
# CI builds and smoke-tests the same `runtime` stage that way (scripts/container-smoke.sh),
# without pulling a base image or building in the container.

ARG RUST_VERSION=1.95
ARG ROOTFS=built

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS chef
# binutils: `strip`; ca-certificates: the bundle copied into the image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer is reused until Cargo.toml or Cargo.lock change.
RUN cargo chef cook --release --locked -p bulkhead --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p bulkhead \
    && scripts/container-rootfs.sh target/release/bulkhead /rootfs

FROM scratch AS rootfs-built
COPY --from=builder /rootfs/ /rootfs/

FROM scratch AS rootfs-prebuilt
COPY rootfs/ /rootfs/

FROM rootfs-${ROOTFS} AS rootfs

FROM scratch AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="Bulkhead" \
      org.opencontainers.image.description="A commerce backend in Rust: a modular monolith with extractable modules." \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="scratch"
COPY --from=rootfs /rootfs/ /
# The one writable place: keys, the file mailbox. Owned by the image's user.
COPY --from=rootfs --chown=10001:10001 /rootfs/data /data
# Configuration is by environment only (README, "Configuration"); these make the image
# listen on every interface and keep its state in the volume.
ENV BULKHEAD_ADDR=0.0.0.0:8080 \
    BULKHEAD_DATA_DIR=/data \
    LOG_FORMAT=json \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001
# SIGTERM drains: stop accepting, finish requests, the bus's batches and running jobs
# (BULKHEAD_SHUTDOWN_TIMEOUT), flush spans, exit 0.
STOPSIGNAL SIGTERM
# No shell here: the binary asks its own /health (`bulkhead healthcheck`, 2 s at most).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/bulkhead", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/bulkhead"]
CMD ["serve"]
