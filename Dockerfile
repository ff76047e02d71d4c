# syntax=docker/dockerfile:1

# ordersd and ordersctl in one small image: static binaries (no cgo: the
# SQLite driver is pure Go) on distroless, running as an unprivileged user.
#
#   docker build -t orderstream/ordersd:dev .
#   docker run --rm -p 50051:50051 -p 8080:8080 orderstream/ordersd:dev   # embedded NATS
#
# compose.yaml runs it as a distributed system.

# The builder runs on the build machine's platform and cross-compiles for the
# target, so multi-platform builds need no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
ARG TARGETOS
ARG TARGETARCH
# The source is bind-mounted and the module and build caches persist between
# builds, so nothing but the binaries ends up in a layer and a rebuild after a
# small change recompiles only what changed.
RUN --mount=type=bind,target=. \
    --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOFLAGS=-mod=readonly \
    go build -trimpath -ldflags='-s -w' -o /out/ ./cmd/ordersd ./cmd/ordersctl
# DATA_DIR, owned by the runtime user: a named volume mounted there starts
# with this ownership.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ordersd /out/ordersctl /
COPY --from=build --chown=65532:65532 /out/data /data
# Inside a container, listen on every interface; with no NATS_URL the server
# runs embedded NATS with its store in /data.
ENV GRPC_ADDR=0.0.0.0:50051 \
    HTTP_ADDR=0.0.0.0:8080 \
    DATA_DIR=/data
# Numeric, so that runtimes enforcing "run as non-root" can verify it.
USER 65532:65532
# gRPC, and HTTP (REST, /healthz, /readyz, /metrics).
EXPOSE 50051 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/ordersd", "healthcheck"]
ENTRYPOINT ["/ordersd"]
