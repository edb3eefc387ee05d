# roomcast: the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 20s

.PHONY: run test build vet js fuzz bench sample clean bench-ingest chaos

## run: everything on this machine with embedded defaults (in-process Kafka, throwaway Postgres, local Pusher capture)
run:
	$(GO) run ./cmd/roomcast-dev

# CHECKS: the cross-checks of deployments/ against the roomcast binary, a
# module of their own (Kubernetes, kustomize, BuildKit and compose-go stay out
# of roomcast's go.mod). Without -race: roomcast runs there as a subprocess,
# built without it (the product's own tests run with it), and the race
# detector would only rebuild the parsing libraries.
CHECKS  ?= deployments/checks
# ALERTS: the alert rules' tests, a module of their own (Prometheus' engine
# stays out of roomcast's go.mod). Without -race: they run in one goroutine,
# and building Prometheus with the race detector costs two minutes.
ALERTS  ?= deployments/alerts

# JS: the browser client library, an npm package; its end-to-end tests
# (clients/js/e2e, Go) run pusher-js and soketi from its node_modules and
# import its build, so it is installed and built before the Go tests.
JS      ?= clients/js

## test: the browser client's build and unit tests, the whole real-parts suite with -race, the deployment checks, the alert rules, then a short fuzz of the event decoder
test: vet js
	$(GO) test -race -count=1 -timeout 30m $(PKGS)
	cd $(CHECKS) && $(GO) test -count=1 -timeout 10m ./...
	cd $(ALERTS) && $(GO) test -count=1 ./...
	$(GO) test ./domain/ -run='^$$' -fuzz=FuzzDecode -fuzztime=$(FUZZTIME)

vet:
	$(GO) vet $(PKGS)
	cd $(CHECKS) && $(GO) vet ./...
	cd $(ALERTS) && $(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || (echo "gofmt needed on:"; gofmt -l .; exit 1)

## js: the browser client (clients/js): installed from its lockfile when that changed, built, unit-tested
js: $(JS)/node_modules/.package-lock.json
	cd $(JS) && npm test --silent

$(JS)/node_modules/.package-lock.json: $(JS)/package-lock.json $(JS)/package.json
	cd $(JS) && npm ci --no-audit --no-fund --loglevel=error

## chaos: the long chaos test: hostile messages, a Pusher outage, Postgres down and ten SIGKILLs under a 4,000 events/s stream
chaos:
	ROOMCAST_CHAOS=long $(GO) test -race -count=1 -timeout 30m -run '^TestChaos$$' -v ./cmd/roomcast/

## build: the roomcast binary in bin/
build:
	$(GO) build -o bin/roomcast ./cmd/roomcast

## fuzz: a longer fuzz of the event decoder
fuzz:
	$(GO) test ./domain/ -run='^$$' -fuzz=FuzzDecode -fuzztime=5m

## bench: benchmarks (figures for the closing notes)
bench:
	$(GO) test -p 1 -run='^$$' -bench=. -benchmem -count=1 -timeout 60m $(PKGS)

## sample: send a sample conversation to the dev stack started by `make run`
sample:
	$(GO) run ./cmd/roomcast sample | $(GO) run ./cmd/roomcast emit -brokers localhost:9092

clean:
	rm -rf bin .roomcast

## bench-ingest: end-to-end ingestion benchmarks (roomcast run as a subprocess over a 200,000-event backlog, then produce->Pusher latency)
bench-ingest:
	$(GO) test -run='^$$' -bench='^BenchmarkIngest' -benchtime=1x -count=1 -timeout=30m ./cmd/roomcast/
