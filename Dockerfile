# reservation-api container image.
#
# Build (BuildKit is required for the cache mounts; it is the default builder in Docker 23+):
#   docker build -t reservation-api:dev .
# Run (local profile: embedded store, bundled inventory, development JWT key):
#   docker run --rm -p 8080:8080 reservation-api:dev
#
# The builder keeps the cargo registry, git checkouts and target/ in BuildKit cache mounts, so
# a rebuild after a source edit recompiles only this crate, not the ~360 dependencies.
# protoc is not needed: build.rs compiles the .proto files with the pure-Rust protox.

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

# The whole (docker-ignored) context: Cargo.toml/Cargo.lock, build.rs, proto/, catalog/ (compiled
# into the binary with include_str!), src/, and tests/ and benches/ (cargo resolves every declared
# target when it reads the manifest).
COPY . .

# target/ lives in a cache mount, which is not part of the image: copy the binary out of it.
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=reservation-api-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin reservation-api \
    && install -D -m 0755 target/release/reservation-api /out/reservation-api \
    && /out/reservation-api --version

############################
# Runtime
############################
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

ARG APP_UID=10001
ARG APP_GID=10001

# ca-certificates: TLS to AWS (DynamoDB, EventBridge, STS for IRSA) and to the OIDC issuer's JWKS.
# Versions are not pinned: the slim base is rebuilt often and pins would go stale.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${APP_GID}" app \
    && useradd --system --uid "${APP_UID}" --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app \
    && mkdir -p /app/data \
    && chown -R "${APP_UID}:${APP_GID}" /app

COPY --from=builder /out/reservation-api /usr/local/bin/reservation-api
# The bundled catalogue is compiled in; a copy is kept for `inventory --catalog` / CATALOG_FILE.
COPY --chown=${APP_UID}:${APP_GID} catalog/ /app/catalog/

WORKDIR /app

# Defaults only; compose files and the k8s ConfigMap set the profile and the rest (CONTRACT §9).
# DATA_DIR is the one writable path the service needs (mount a volume there when the root
# filesystem is read-only).
ENV SERVER_PORT=8080 \
    DATA_DIR=/app/data \
    RUST_LOG=info

# Numeric user so that Kubernetes' runAsNonRoot can verify it.
USER ${APP_UID}:${APP_GID}

EXPOSE 8080

# No HEALTHCHECK: the slim image has no curl/wget; Kubernetes probes /actuator/health/liveness
# and /actuator/health/readiness, and docker-compose.dev.yml probes from its own side.
# The service drains in-flight requests and flushes the outbox relay on SIGTERM.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/reservation-api"]
CMD ["serve"]
