# syntax=docker/dockerfile:1
#
# One Dockerfile, two images:
#
#   docker build --target discount -t discount .
#   docker build --target catalog  -t catalog  .
#
# Both binaries are compiled once, in the shared `builder` stage; the second build reuses its
# cached layer. The images hold one binary on distroless (glibc + libgcc, no shell, no
# package manager) and run as uid 65532 ("nonroot"). Certificates are never baked in: mount them
# (see compose.yaml and deploy/k8s/).

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The registry, git checkouts and target/ live in BuildKit cache mounts, so a rebuild after a
# source change recompiles only the workspace crates. target/ is not part of the layer, hence the
# copy to /out in the same step.
RUN --mount=type=cache,id=shop-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=shop-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=shop-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p catalog-service -p discount-service \
 && mkdir -p /out \
 && cp target/release/catalog-service target/release/discount-service /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
# Where the services look for ca.pem, <service>.pem and <service>.key unless --ca/--cert/--key
# (or their variables) point elsewhere. Mount the certificates here.
ENV CERTS_DIR=/certs \
    LOG_FORMAT=json

FROM runtime AS discount
COPY --from=builder /out/discount-service /usr/local/bin/discount-service
ENV DISCOUNT_LISTEN=0.0.0.0:11443 \
    DISCOUNT_OPS_LISTEN=0.0.0.0:9466
USER 65532:65532
# 11443: gRPC over mutual TLS. 9466: plain-HTTP ops port (/healthz, /readyz, /metrics).
EXPOSE 11443 9466
# Exec form: there is no shell in the image. The probe subcommand exits 0 on a 2xx answer.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/discount-service", "probe", "http://127.0.0.1:9466/healthz"]
ENTRYPOINT ["/usr/local/bin/discount-service"]

FROM runtime AS catalog
COPY --from=builder /out/catalog-service /usr/local/bin/catalog-service
ENV CATALOG_LISTEN=0.0.0.0:11080 \
    CATALOG_OPS_LISTEN=0.0.0.0:9465
USER 65532:65532
# 11080: the HTTP API. 9465: plain-HTTP ops port (/healthz, /readyz, /metrics).
EXPOSE 11080 9465
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/catalog-service", "probe", "http://127.0.0.1:9465/healthz"]
ENTRYPOINT ["/usr/local/bin/catalog-service"]
