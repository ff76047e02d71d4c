# syntax=docker/dockerfile:1

# ordersd and ordersctl in one small image: static binaries (no cgo: the
# SQLite driver is pure Go) on distroless, running as an unprivileged user.
#
#   docker build -t orderstream/ordersd:dev .
#
# The image listens on every interface of the container and so, like ordersd
# anywhere, refuses to start (exit 2, naming GRPC_ADDR) unless authentication
# is configured or ALLOW_INSECURE=true says an open server is intended. It
# sets neither: that choice belongs to whoever runs it. A demo with embedded
# NATS, published on this machine's loopback only:
#
#   docker run --rm --stop-timeout 30 -v ordersd-data:/data -p 127.0.0.1:50051:50051 -p 127.0.0.1:8080:8080 -e ALLOW_INSECURE=true orderstream/ordersd:dev
#
# With bearer tokens (README, Run anywhere), reachable from other machines:
#
#   docker run --rm --stop-timeout 30 -v ordersd-data:/data -p 50051:50051 -p 8080:8080 -v ./tokens:/etc/ordersd/tokens:ro -e AUTH_TOKENS_FILE=/etc/ordersd/tokens orderstream/ordersd:dev
#
# The event log, the keys and the read model live in /data: the named volume
# keeps them when the container is removed (--rm), and --stop-timeout gives
# a stop the SHUTDOWN_TIMEOUT and the 15 s after it that ordersd may take
# (Docker's default is 10 s, then SIGKILL).
#
# compose.yaml runs it as a distributed system. deploy/dockerfile_test.go
# runs this file's ENV and these commands' -e variables through ordersd's
# configuration check, and checks their volume and stop timeout.

# The builder runs on the build machine's platform and cross-compiles for the
# target, so multi-platform builds need no emulation.
# The builder's Go is go.mod's exact version: the image builds with
# GOTOOLCHAIN=local, and an older patch release (a cached 1.26) refuses
# go.mod's.
FROM --platform=$BUILDPLATFORM golang:1.26.8 AS build
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
# Inside a container, listen on every interface (which needs authentication
# or ALLOW_INSECURE, see above); with no NATS_URL the server runs embedded
# NATS with its store in /data, its client port on the container's loopback.
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
