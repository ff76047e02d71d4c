// Package deploy loads compose.yaml the way docker compose does (LoadCompose)
// for the tests that check or run it. Its own tests check the deployment
// files at the repository root against what ordersd expects, so a drift
// between them fails `go test ./...` instead of a `docker compose up`
// someone runs later; deploy/topology runs compose.yaml's services as local
// processes.
//
// deploy is a module of its own, replacing the service's module with this
// checkout, so compose-go and BuildKit stay out of the service's go.mod;
// `make test` runs its tests with the service's.
//
// compose.yaml is loaded with the compose-spec loader (the one docker compose
// uses) and checked for: a three-node NATS JetStream cluster (on the nats
// image of the nats-server release go.mod pins, the one the tests embed)
// whose routes name every node, with file storage on a named volume per node and a health
// check; every ordersd role with its replica count, the NATS health as a
// start condition, a health check and the environment (all three NATS URLs,
// R3, traces to Jaeger, listen addresses, the gateway's backend addresses);
// and a read-model volume of its own for every query node. deploy/nats/*.conf,
// which compose mounts into the NATS nodes, is parsed with nats-server's own
// configuration parser. Every ordersd service's environment, over the
// image's ENV, is run through internal/config, so compose can only set values
// ordersd accepts; and every upstream address a service sets (COMMAND_ADDR,
// QUERY_ADDR, AUDIT_ADDR, PAYMENTS_ADDR) must name exactly the services
// running that role, on their gRPC port, with every role that calls another
// (per config.Needs) given its address.
//
// The Dockerfile is parsed with BuildKit's parser and linter and checked for a
// separate build stage compiling static binaries (CGO_ENABLED=0) with cache
// mounts, a distroless or scratch final stage with a non-root USER, the
// HEALTHCHECK and the ENTRYPOINT. Its ENV must not validate on its own (the
// image listens beyond loopback and does not open itself), while every
// `docker run` documented in it or in README.md must: its -e variables over
// the ENV pass internal/config.
//
// None of it needs Docker.
package deploy
