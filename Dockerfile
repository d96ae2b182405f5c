# reservation-api container image: one binary for the API (`serve`), the seat inventory
# (`inventory`) and the payment simulator (`payment`).
#
#   docker build -t reservation-api:0.1.0 .
#   docker run --rm -p 8080:8080 reservation-api:0.1.0                     # local profile
#   docker run --rm reservation-api:0.1.0 config check                     # what `serve` would read
#
# No Docker engine runs in this project's CI: the image itself is not built there. The Dockerfile
# is linted with hadolint, and it builds exactly what `cargo build --release --locked` builds,
# which CI does build. protoc is not needed: build.rs compiles proto/ with the pure-Rust protox.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

############################
# Builder
############################
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder

WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=5

# The (docker-ignored) context: Cargo.toml/Cargo.lock, build.rs, proto/, catalog/ and
# dynamodb/tables.json (compiled in with include_str!), src/, tests/ and benches/ (cargo resolves
# every declared target when it reads the manifest).
COPY . .

# BuildKit cache mounts keep the registry and target/ between builds; target/ is not part of the
# image, so the binary is copied out of it. An empty, app-owned data folder is made here because
# the runtime image has no shell.
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=reservation-api-target,target=/src/target,sharing=locked \
    cargo build --release --locked \
    && install -D -m 0755 target/release/reservation-api /out/reservation-api \
    && /out/reservation-api --version \
    && mkdir -p /out/data

############################
# Runtime: distroless (glibc, libgcc, CA certificates; no shell, no package manager)
############################
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

ARG APP_UID=10001

COPY --from=builder /out/reservation-api /usr/local/bin/reservation-api
# The bundled catalogue is compiled in; a copy is kept for `inventory --catalog` / CATALOG_FILE.
COPY --chown=10001:10001 catalog/ /app/catalog/
# DATA_DIR, the one path the service may write (mount a volume there under a read-only root).
COPY --from=builder --chown=10001:10001 /out/data /app/data

WORKDIR /app
ENV SERVER_PORT=8080 \
    DATA_DIR=/app/data \
    RUST_LOG=info

# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER ${APP_UID}:${APP_UID}

EXPOSE 8080 9090 9091

# The binary probes itself (no curl in the image). For the `inventory` and `payment` subcommands
# override it, e.g. `reservation-api probe grpc://127.0.0.1:9090` (the compose files do).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/reservation-api", "probe", "http://127.0.0.1:8080/actuator/health/liveness"]

# SIGTERM drains in-flight requests and lets the outbox relay publish what is due.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/reservation-api"]
CMD ["serve"]
