# Ferry: `make run` builds and starts the server on its embedded default config,
# `make test` runs the whole suite (unit, end-to-end and coturn interop tests).

GO          ?= go
VERSION     ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X main.version=$(VERSION)
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck
ARGS        ?=

.PHONY: all build run test lint bench interop clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/ferry ./cmd/ferry

# ARGS passes flags to `ferry serve`, e.g. make run ARGS="--config ferry.toml".
run: build
	./bin/ferry serve $(ARGS)

test:
	$(GO) test -race -count=1 ./...

# Only the tests that drive coturn's turnutils_uclient against Ferry.
interop:
	$(GO) test -race -count=1 -run 'Turnutils' -v ./test/

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

lint:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

clean:
	rm -rf bin
