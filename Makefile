# Sluice's everyday commands. `make help` lists them.
GO ?= go
BIN := bin

.PHONY: help build test test-short test-tools testenv bench bench-scale bench-shards bench-release bench-release-flagger fuzz schema golden

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# Static, without symbol tables, DWARF or build paths: 124 MB -> 65 MB, and
# a smaller binary is a smaller resident set (see BENCHMARKS.md). Without
# CGO_ENABLED=0, kustomize's import of the plugin package links the binary
# dynamically and exports every symbol.
build: ## build the sluice binary into bin/ (static and stripped, as the image's)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/sluice ./cmd/sluice

test-tools: ## install what the test cluster needs (etcd, Prometheus, Kubernetes binaries, kwok)
	hack/testenv-tools.sh

test: test-tools ## run every test, against the real local test cluster, Prometheus and Git servers
	GO=$(GO) hack/test.sh

test-short: ## the inner loop: every test that needs no cluster, Prometheus or Gitea (under a minute)
	$(GO) test -short -count=1 ./...

testenv: test-tools ## start the local test cluster and keep it up until Ctrl-C
	$(GO) run ./internal/testenv/cmd/testenv

bench: ## run the Go benchmarks of the pieces
	$(GO) test -run '^$$' -bench . -benchmem ./...

BENCH_N ?= 100,1000,5000
# The benchmarks run sluice as deploy/deployment.yaml does: with its
# GOMEMLIMIT (the Go runtime's soft memory limit below the container's).
BENCH_GOMEMLIMIT ?= $(shell awk '/name: GOMEMLIMIT/ {getline; print $$2}' deploy/deployment.yaml)
bench-release: build test-tools ## time one good and one bad release of examples/catalog on the local stack
	$(GO) run ./cmd/sluice-bench -release-timing -sluice $(BIN)/sluice -sluice-env GOMEMLIMIT=$(BENCH_GOMEMLIMIT) -json internal/bench/release-timing.json

# For comparison only, not part of `make test` or CI: Flagger is not a
# dependency of Sluice. It needs a flagger binary and Flagger's CRDs of the
# same release, e.g.
#   GOBIN=/tmp/flaggerbin go install github.com/fluxcd/flagger/cmd/flagger@v1.36.1
#   curl -sLo /tmp/flagger-crd.yaml https://raw.githubusercontent.com/fluxcd/flagger/v1.36.1/artifacts/flagger/crd.yaml
FLAGGER ?= /tmp/flaggerbin/flagger
FLAGGER_CRD ?= /tmp/flagger-crd.yaml
BENCH_RUNS ?= 3
bench-release-flagger: test-tools ## time Flagger's good and bad release of the same catalog on the local stack (FLAGGER=, FLAGGER_CRD=, BENCH_RUNS=)
	$(GO) run ./cmd/sluice-bench -release-timing -flagger $(FLAGGER) -flagger-crd $(FLAGGER_CRD) -runs $(BENCH_RUNS) -json internal/bench/release-timing-flagger.json

bench-scale: build test-tools ## measure sluice with 100, 1,000 and 5,000 releases on the local test cluster (BENCH_N=...)
	$(GO) run ./cmd/sluice-bench -n $(BENCH_N) -sluice $(BIN)/sluice -sluice-env GOMEMLIMIT=$(BENCH_GOMEMLIMIT) -json internal/bench/results.json

# bench-shards measures 10,000 releases unless BENCH_N is given.
BENCH_SHARDS_N = $(if $(filter file,$(origin BENCH_N)),10000,$(BENCH_N))
BENCH_REPLICAS ?= 3
BENCH_SHARDS ?= 12
bench-shards: build test-tools ## measure 3 sluice replicas sharing 10,000 releases in 12 shards, and one SIGKILLed (BENCH_N, BENCH_REPLICAS, BENCH_SHARDS)
	$(GO) run ./cmd/sluice-bench -n $(BENCH_SHARDS_N) -replicas $(BENCH_REPLICAS) -shards $(BENCH_SHARDS) -sluice $(BIN)/sluice -sluice-env GOMEMLIMIT=$(BENCH_GOMEMLIMIT) -json internal/bench/results-shards.json

fuzz: ## fuzz the release spec parser for a minute
	$(GO) test ./specs -run '^$$' -fuzz FuzzParse -fuzztime 60s

schema: ## regenerate specs/release.schema.json from the Go types
	$(GO) test ./specs -run Schema -update

golden: ## regenerate the renderer's golden files
	$(GO) test ./renderer -run Golden -update

.PHONY: demo demo-rollback
demo: build test-tools ## run a real release of examples/catalog end to end on the local test cluster
	$(GO) run ./cmd/sluice-demo

demo-rollback: build test-tools ## the same release with a bad v2, rolled back by its gates
	$(GO) run ./cmd/sluice-demo --bad
