# Every tool is pinned in tools.mod (tool directives, kept apart from the
# service's own dependencies) and run with `go tool`, so
# the only prerequisite is Go itself.
GO  ?= go
TOOL := $(GO) tool -modfile=tools.mod
BUF  := $(TOOL) buf

# The repository's Go modules: the service's, then the nested ones that keep
# test-only dependencies out of its go.mod (each replaces the service's
# module with this checkout): the OpenAPI generator and its tests
# (kin-openapi, YAML), and deploy, the deployment files' tests and
# deploy/topology (compose-go, BuildKit). `go test ./...` at the root does
# not enter them; these targets do. test/readme checks that every go.mod is
# listed here.
MODULES := . api/openapi/gen deploy

.DEFAULT_GOAL := test

.PHONY: download
download: ## Fetch every module's dependencies and the tools.
	$(GO) mod download -modfile=tools.mod
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) mod download); done

.PHONY: test
test: ## Run every module's tests with the race detector.
	$(GO) mod download -modfile=tools.mod # test/readme builds grpcurl offline
	@set -e; for m in $(MODULES); do echo "go test -race ./... in $$m"; (cd $$m && $(GO) test -race -timeout 30m ./...); done

.PHONY: tidy
tidy: ## go mod tidy in every module (a nested module's go.sum must list what it builds of the service).
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) mod tidy); done

.PHONY: topology
topology: ## Run compose.yaml's services as local processes: nodes killed, the stream leader partitioned.
	cd deploy && $(GO) test -race -count=1 -v ./topology

.PHONY: generate
generate: ## Regenerate protobuf, gRPC, gateway and OpenAPI code.
	$(BUF) generate
	cd api/openapi/gen && $(GO) run .
	gofmt -w api

.PHONY: lint
lint: ## gofmt, go vet, buf lint, buf format and golangci-lint (every module).
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done
	$(BUF) lint
	$(BUF) format -d --exit-code
	@$(MAKE) --no-print-directory lint-go

.PHONY: lint-go
lint-go: ## golangci-lint (.golangci.yml) in every module.
	@lint="$$($(TOOL) -n golangci-lint)"; set -e; for m in $(MODULES); do echo "golangci-lint run in $$m"; (cd $$m && "$$lint" run --allow-serial-runners -c "$(CURDIR)/.golangci.yml" ./...); done

# The contract as it was before this change; stored events are decoded with
# it, so WIRE_JSON breakage is refused, not just API breakage.
BREAKING_AGAINST ?= .git\#ref=HEAD~1

.PHONY: breaking
breaking: ## Fail when the protos break wire or JSON compatibility with BREAKING_AGAINST.
	$(BUF) breaking --against '$(BREAKING_AGAINST)'

.PHONY: checkgenerate
checkgenerate: generate ## Fail when committed generated code is stale.
	@git diff --exit-code -- api || { echo "generated code is stale: run make generate and commit"; exit 1; }
	@untracked="$$(git ls-files --others --exclude-standard -- api)"; if [ -n "$$untracked" ]; then echo "untracked generated files:"; echo "$$untracked"; exit 1; fi

# The OpenAPI linter, from the npm registry (needs Node.js and npx).
REDOCLY_CLI_VERSION := 2.77.0

.PHONY: openapi-lint
openapi-lint: ## Lint the OpenAPI 3 document with @redocly/cli (redocly.yaml).
	npx --yes @redocly/cli@$(REDOCLY_CLI_VERSION) lint --config redocly.yaml api/openapi/openapi.json

.PHONY: run
run: ## Run the whole system with embedded NATS.
	$(GO) run ./cmd/ordersd

.PHONY: bench
bench: ## Benchmarks of the hot paths, then ordersbench against a temporary ordersd.
	$(GO) test -run '^$$' -bench . -benchmem ./order ./api/convert ./eventstore ./services/command ./services/audit ./projections ./internal/app
	@dir="$$(mktemp -d)"; \
	$(GO) build -buildvcs=auto -o "$$dir/ordersd" ./cmd/ordersd && $(GO) build -o "$$dir/ordersbench" ./cmd/ordersbench && \
	{ DATA_DIR="$$dir/data" GRPC_ADDR=127.0.0.1:50551 HTTP_ADDR=127.0.0.1:18080 NATS_LISTEN=127.0.0.1:14222 LOG_LEVEL=warn "$$dir/ordersd" & pid=$$!; \
	  for i in $$(seq 1 100); do curl -sf http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.2; done; \
	  "$$dir/ordersbench" --addr 127.0.0.1:50551 --nats nats://127.0.0.1:14222 --rate 1000 --duration 10s --compare-raw; \
	  kill $$pid; wait $$pid 2>/dev/null; }; rm -rf "$$dir"

# FLOOR_FLAGS passes flags to ordersbench floor, e.g.
# FLOOR_FLAGS='--events 1000000 --json floor.json --profile-dir prof'.
FLOOR_FLAGS ?=

.PHONY: bench-floor
bench-floor: ## ordersd against raw gRPC and raw JetStream floors, one run (starts its own ordersd).
	@dir="$$(mktemp -d)"; \
	$(GO) build -buildvcs=auto -o "$$dir/ordersd" ./cmd/ordersd && $(GO) build -o "$$dir/ordersbench" ./cmd/ordersbench && \
	"$$dir/ordersbench" floor --ordersd "$$dir/ordersd" $(FLOOR_FLAGS); rc=$$?; rm -rf "$$dir"; exit $$rc

.PHONY: docker
docker: ## Build the container image (needs a Docker engine).
	docker build -t orderstream/ordersd:dev .

.PHONY: compose-up
compose-up: ## Run the distributed setup: 3-node NATS cluster, roles, Jaeger.
	docker compose up --build --wait

.PHONY: compose-down
compose-down:
	docker compose down

.PHONY: help
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'
