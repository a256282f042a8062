# overboot: `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

GO      ?= go
BUILD   ?= $(CURDIR)/build
# -buildvcs=auto: the commit goes into the binary (overboot version) when
# built in a git clone, whatever GOFLAGS the machine's go env sets.
GOFLAGS_BIN := -trimpath -buildvcs=auto -ldflags='-s -w -buildid='

# Debian packages the tests, the demo and the benchmarks need.
APT_PACKAGES := qemu-system-x86 ipxe-qemu ipxe linux-image-amd64 squashfs-tools \
	busybox-static cpio e2fsprogs nginx libiscsi-bin tgt zstd \
	syslinux syslinux-common mtools debootstrap chromium tftpd-hpa tftp-hpa \
	dnsmasq-base iproute2 ovmf cryptsetup-bin kea-admin man-db lintian postgresql \
	shim-signed grub-efi-amd64-signed grub-common sbsigntool openssl osslsigncode \
	swtpm swtpm-tools tpm2-tools nfs-ganesha nfs-ganesha-vfs rpcbind

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install the Debian packages the tests need (apt-get, only what is missing)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to install packages: $$missing" >&2; exit 1; fi; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\n# make deps: packages installed for the tests start no service\nexit 101\n' > /usr/sbin/policy-rc.d; \
			chmod 755 /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; \
		fi; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

.PHONY: build
build: $(BUILD)/overboot $(BUILD)/overboot-init ## build the binaries into build/

$(BUILD)/overboot: FORCE
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BIN) -o $@ ./cmd/overboot

$(BUILD)/overboot-init: FORCE
	@mkdir -p $(BUILD)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BIN) -o $@ ./cmd/overboot-init

.PHONY: man
man: $(BUILD)/overboot ## man pages of every command into build/man (man -l build/man/overboot-serve.1)
	$(BUILD)/overboot gen-man $(BUILD)/man

# make deb: the package's version (dist/deb/version.sh: from git describe),
# its maintainer (default: the author of the last commit) and the time of
# every file in it (default: the last commit's; SOURCE_DATE_EPOCH wins).
DEB_VERSION    ?= $(shell dist/deb/version.sh)
DEB_MAINTAINER ?= $(shell git log -1 --format='%an <%ae>' 2>/dev/null)
DEB_DATE       ?= $(or $(SOURCE_DATE_EPOCH),$(shell git log -1 --format=%ct 2>/dev/null))

.PHONY: deb
deb: export SOURCE_DATE_EPOCH := $(DEB_DATE)
deb: export VERSION = $(DEB_VERSION)
deb: export MAINTAINER = $(DEB_MAINTAINER)
deb: build man ## the Debian package build/overboot_VERSION_amd64.deb (dpkg-deb; check it with lintian)
	@if [ -z "$$VERSION" ] || [ -z "$$MAINTAINER" ] || [ -z "$$SOURCE_DATE_EPOCH" ]; then echo "make deb: outside a git clone, give DEB_VERSION, DEB_MAINTAINER and DEB_DATE" >&2; exit 1; fi
	BUILD=$(BUILD) GO=$(GO) dist/deb/build.sh

.PHONY: check
check: ## gofmt and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:" $$unformatted >&2; exit 1; fi
	$(GO) vet ./...

# The test tiers run with OVERBOOT_STRICT=1: a test that needs what the
# machine lacks (a tool, a module, root: internal/testneed) fails instead
# of skipping. go test -json goes through internal/testsummary, which shows
# failing tests' output in full, ends with "N passed, M failed, K skipped"
# and records each test's outcome in TESTRESULTS for make test's total.
TESTSUMMARY := $(BUILD)/testsummary
TESTRESULTS := $(BUILD)/test-results

$(TESTSUMMARY): FORCE
	@mkdir -p $(BUILD)
	@$(GO) build -o $@ ./internal/testsummary

.PHONY: unit
unit: $(TESTSUMMARY) ## tiers 1 and 2: go test ./... (tier 2 needs root: loop, squashfs, overlayfs); missing needs fail
	@mkdir -p $(TESTRESULTS) && rm -f $(TESTRESULTS)/unit.tsv
	OVERBOOT_STRICT=1 $(GO) test -count=1 -json ./... | $(TESTSUMMARY) -tier unit -record $(TESTRESULTS)/unit.tsv

.PHONY: vmtest
vmtest: deps $(TESTSUMMARY) ## tier 3: boot QEMU machines (TCG) from the server and check the root; kernel checks (nbd, dm-verity) in QEMU
	@mkdir -p $(TESTRESULTS) && rm -f $(TESTRESULTS)/vmtest.tsv
	@mkdir -p $(BUILD)/test-artifacts
	OVERBOOT_STRICT=1 OVERBOOT_VMTEST=1 OVERBOOT_VMTEST_CACHE=$(CURDIR)/build/cache $(GO) test -count=1 -timeout 45m -json -artifacts -outputdir $(BUILD)/test-artifacts ./vmtest/ ./internal/nbd/ ./internal/verity/ \
		| $(TESTSUMMARY) -v -tier vmtest -record $(TESTRESULTS)/vmtest.tsv

.PHONY: test
test: deps check build unit vmtest ## every tier, QEMU boots included (installs packages when missing); ends with the tests skipped in all (goal: 0)
	@$(TESTSUMMARY) -total -tier "make test, all tiers" $(TESTRESULTS)/unit.tsv $(TESTRESULTS)/vmtest.tsv

.PHONY: demo
demo: deps build ## build everything, start the server, PXE-boot one QEMU machine, show each phase
	CGO_ENABLED=0 $(GO) build -o $(BUILD)/overboot-demo ./cmd/overboot-demo
	$(BUILD)/overboot-demo -work $(BUILD)/demo

.PHONY: fuzz
fuzz: ## run every fuzzer for FUZZTIME each (default 30s)
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $${FUZZTIME:-30s} $$pkg; \
		done; \
	done

.PHONY: clean
clean: ## remove build outputs
	rm -rf $(BUILD)

.PHONY: FORCE
FORCE:

.PHONY: bench
bench: deps build ## benchmarks side by side with mksquashfs, nginx, tgtd; prints ratios
	CGO_ENABLED=0 $(GO) build -o $(BUILD)/overboot-bench ./cmd/overboot-bench
	$(BUILD)/overboot-bench -build $(BUILD) -work $(BUILD)/bench $(if $(ONLY),-only $(ONLY))
