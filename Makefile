GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN     := bin/bottle-apply
LDFLAGS := -X main.version=$(VERSION)
PKGS    := ./...

# The architectures bottle-bundle is built for (internal/bundlebin.Arches):
# the bundle and the probe run on the engine's, whatever bottle-apply's.
BUNDLE_ARCHES := amd64 arm64
# The platforms a release holds a bottle-apply for.
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64

.PHONY: build bundles deps unit test test-engine29 test-kubernetes e2e fuzz lint fmt schema bench demo demo-image release clean

## build: bin/bottle-apply for this machine, and beside it the static linux bottle-bundle of each of BUNDLE_ARCHES (the built-in bundle image and the self-test's probe are made of the engine's)
build: bundles
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/bottle-apply

## bundles: bin/bottle-bundle-linux-ARCH for each of BUNDLE_ARCHES
bundles:
	@set -e; for arch in $(BUNDLE_ARCHES); do \
		echo "CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -o bin/bottle-bundle-linux-$$arch ./cmd/bottle-bundle"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -o bin/bottle-bundle-linux-$$arch ./cmd/bottle-bundle; \
	done

## release: dist/bottle-apply-VERSION-OS-ARCH.tar.gz for each of RELEASE_PLATFORMS: one directory, bottle-apply for that platform beside every bottle-bundle build; keep the files together
release: bundles
	rm -rf dist && mkdir -p dist
	@set -e; for p in $(RELEASE_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; d=bottle-apply-$(VERSION)-$$os-$$arch; \
		echo "CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -o dist/$$d/bottle-apply ./cmd/bottle-apply"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/$$d/bottle-apply ./cmd/bottle-apply; \
		cp bin/bottle-bundle-linux-* dist/$$d/; \
		tar -C dist -czf dist/$$d.tar.gz $$d; \
	done
	@ls -l dist/*.tar.gz

## deps: a Docker engine that answers and a static busybox (installs them as root)
deps:
	@hack/ensure-deps.sh

## unit: the fast pure tests alone, for the edit loop
unit:
	$(GO) test -short $(PKGS)

## test: everything CI runs: lint, unit and integration tests against the real engine with -race, e2e, a short fuzz run
test: deps lint
	@docker version --format 'Server: Docker Engine {{.Server.Version}} (API {{.Server.APIVersion}}, {{.Server.Os}}/{{.Server.Arch}})' 2>/dev/null || true
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(MAKE) fuzz FUZZTIME=15s
	@# Restarting the engine stops every container on it: CI only, alone.
	@if [ -n "$$CI" ]; then \
		echo "BOTTLE_APPLY_TEST_ENGINE_RESTART=1 $(GO) test -count=1 -run TestE2EEngineRestartDuringApply ./cmd/bottle-apply"; \
		BOTTLE_APPLY_TEST_ENGINE_RESTART=1 $(GO) test -count=1 -run TestE2EEngineRestartDuringApply ./cmd/bottle-apply; \
	else echo "skipping the engine-restart test outside CI (it restarts dockerd)"; fi

## test-engine29: the tests again against Docker 29 in a network namespace of its own (root; built once into ~/.cache/bottle-apply/engines/docker-29): all of them on the containerd image store with iptables, then the engine-restart test alone, then the e2e tests on overlay2 with nftables (hack/engine/test.sh)
test-engine29: deps
	GO=$(GO) hack/engine/test.sh

## test-kubernetes: the tests whose names say Kube against a real single-node Kubernetes v1.34.4 (containerd, CNI bridge, kube-router NetworkPolicy) in the network namespace k8s (root; built once into ~/.cache/bottle-apply/k8s; hack/k8s/test.sh)
test-kubernetes: deps
	GO=$(GO) hack/k8s/test.sh

## e2e: build the binary and apply the examples on the real engine
e2e: deps
	$(GO) test -race -count=1 -timeout 10m -run E2E ./cmd/...

FUZZTIME ?= 1m
## fuzz: fuzz the spec parser
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./spec
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) ./spec

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

## schema: regenerate schema/bottle-apply.schema.json, the JSON Schema of the spec editors use, from the spec types
schema:
	$(GO) run ./cmd/bottle-apply schema > schema/bottle-apply.schema.json.tmp
	mv schema/bottle-apply.schema.json.tmp schema/bottle-apply.schema.json

## bench: the Go benchmarks, then bottle-apply side by side with docker compose v2 on the local engine (hack/bench)
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
	$(GO) run ./hack/bench -rounds 5 -out bench-results/latest.json

## demo: build, start the engine if needed, apply examples/hello.yaml twice (the second run changes nothing)
demo: deps build demo-image
	$(BIN) -f examples/hello.yaml
	$(BIN) -f examples/hello.yaml
	@echo "Remove it with: $(BIN) -f examples/hello.yaml --destroy"

demo-image:
	@hack/demo-image.sh

clean:
	rm -rf bin dist
