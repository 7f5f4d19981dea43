# Tripline. `make test` is what CI runs (see .ci/run).

GO           ?= go
BIN          ?= bin/tripline
TEST_TIMEOUT ?= 15m
# Time per fuzz target for `make fuzz`.
FUZZTIME     ?= 20s

.PHONY: all deps dev build test fuzz bench lint-rules clean

all: build test

build:
	$(GO) build -o $(BIN) ./cmd/tripline

# ClickHouse for the tests and `tripline dev` (installed with apt-get
# when missing; skipped when CLICKHOUSE_ADDR names a server).
deps:
	.ci/clickhouse

# Everything locally: embedded NATS, a local ClickHouse child process.
dev: deps
	$(GO) run ./cmd/tripline dev

test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# Runs every fuzz test of the module (each Fuzz* function found by
# `go test -list`) for FUZZTIME, e.g. FuzzDecode in ./pipeline.
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) .ci/fuzz

# Go benchmarks of the hot paths, then the end-to-end figures against the
# raw engines (tripline bench; a few minutes on 2 cores).
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem -timeout $(TEST_TIMEOUT) ./...
	$(BIN) bench

lint-rules: build
	$(BIN) rules lint rules/pack rules/examples
	$(BIN) rules test rules/pack rules/examples

clean:
	rm -rf bin
