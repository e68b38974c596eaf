# saslgate: make run | make test | make lint | make fuzz | make bench | make soak
SHELL      := /bin/bash
GO         ?= go
BIN        := bin/saslgate
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -X github.com/saslgate/saslgate/cmd/commands.Version=$(VERSION)
DEB_PKGS   := libpam0g-dev libpam-wrapper sasl2-bin dovecot-imapd postfix swaks libsasl2-modules db5.3-util groff-base
FUZZTIME   ?= 30s # or a count of executions, e.g. 20000x
BENCHTIME  ?= $(if $(filter 1,$(BENCH_QUICK)),100ms,2s)
SOAKTIME   ?= 5m
# make package: nfpm pinned (v2.46.3 and later do not build from this proxy),
# built once into bin/tools; the package version is 0.1.0 plus the date and
# hash of the commit built (.dirty for uncommitted changes), so one commit
# gives one version wherever it is built, and the binary says the same
NFPM_VERSION := v2.44.0
NFPM       := bin/tools/nfpm-$(NFPM_VERSION)
DIST       ?= dist
PKG_VERSION ?= $(shell v=0.1.0; d=$$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null) && \
	v=$$v~git$$d.$$(git rev-parse --short=7 HEAD) && { git diff --quiet HEAD 2>/dev/null || v=$$v.dirty; }; echo $$v)
# the packaged files' time: the commit's
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: all build run test unit e2e lint units fuzz bench deps clean package

all: build

# deps installs the Debian packages the build and the tests use, when missing.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root to install)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/saslgate
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)-metrics ./cmd/saslgate-metrics

# run starts the daemon in the foreground on a bundled demo sasldb, on a
# socket in a temporary directory, and prints the command to query it.
run: build
	./$(BIN) demo

test: deps lint units unit e2e

unit:
	$(GO) test -race -count=1 ./protocol/... ./mechs/... ./daemon/... ./cmd/...
	# a count, not a duration: Go 1.26's fuzz coordinator can fail a
	# duration-bound run with "context deadline exceeded" on a loaded machine
	# (go.dev/issue/75804, fixed in 1.27)
	$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

e2e: build
	$(GO) test -count=1 -timeout 20m ./test/...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# units checks systemd/ as installed: systemd-analyze verify must print
# nothing (it exits 0 on warnings), and the hardening must not regress
# (security --threshold, exposure x10). The copies verified differ from the
# files only in ExecStart's binary, bin/saslgate (verify wants an executable
# and /usr/sbin/saslgate is not installed here). The tmpfiles.d snippet runs
# in a scratch root whose /etc/group has sasl, so no check depends on what
# this machine has installed; its commented-out chroot line is checked too.
units: build
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for u in saslgate.socket saslgate.service; do \
	  sed '/^ExecStart=/s|=/usr/sbin/saslgate |=$(abspath $(BIN)) |' systemd/$$u > "$$tmp/$$u"; \
	done; \
	[ "$$(diff systemd/saslgate.service "$$tmp/saslgate.service" | grep -c '^>')" = 1 ] || \
	  { echo "units: saslgate.service must have one ExecStart=/usr/sbin/saslgate ..."; exit 1; }; \
	out=$$(systemd-analyze verify --man=no "$$tmp/saslgate.socket" "$$tmp/saslgate.service" 2>&1); \
	if [ -n "$$out" ]; then echo "systemd-analyze verify:"; echo "$$out"; exit 1; fi; \
	systemd-analyze security --offline=yes --threshold=25 "$$tmp/saslgate.service" > "$$tmp/security" 2>&1 || \
	  { cat "$$tmp/security"; echo "units: saslgate.service's exposure rose above 2.5"; exit 1; }; \
	mkdir -p "$$tmp/root/etc" "$$tmp/root/usr/lib/tmpfiles.d"; echo 'sasl:x:4545:' > "$$tmp/root/etc/group"; \
	sed 's|^#d |d |' systemd/saslgate.tmpfiles > "$$tmp/root/usr/lib/tmpfiles.d/saslgate.conf"; \
	out=$$(systemd-tmpfiles --create --root="$$tmp/root" saslgate.conf 2>&1); \
	if [ -n "$$out" ]; then echo "systemd-tmpfiles:"; echo "$$out"; exit 1; fi; \
	for d in /run/saslauthd /var/spool/postfix/var/run/saslauthd; do \
	  [ "$$(stat -c '%a %u %g' "$$tmp/root$$d")" = "710 0 4545" ] || \
	    { echo "units: saslgate.tmpfiles does not make $$d root:sasl 0710"; exit 1; }; \
	done; \
	echo "units: saslgate.socket, saslgate.service and saslgate.tmpfiles check out"

# FUZZ_TARGETS: package:target pairs, one native fuzz target per parser.
FUZZ_TARGETS := ./protocol/:FuzzReadRequest ./protocol/:FuzzReady ./protocol/:FuzzReadReply ./protocol/:FuzzParseCheckpassword ./mechs/sasldb/:FuzzParse \
	./mechs/pam/:FuzzDecode ./mechs/rimap/:FuzzLoginCommand ./mechs/rimap/:FuzzClassify \
	./daemon/config/:FuzzParse ./daemon/rewrite/:FuzzApply ./daemon/stats/:FuzzFetch

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
	  $(GO) test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) $${t%%:*}; \
	done

# bench runs the Go benchmarks, then saslgate and the real Cyrus saslauthd
# side by side under the same load (about 20 minutes), and rewrites
# BENCHMARKS.md and the plots in docs/bench. BENCH_QUICK=1 is a smoke test
# of two or three minutes that writes below the temporary directory; BENCHFLAGS
# passes flags to test/benchcmp (-only, -c, -d, -rounds: go run ./test/benchcmp -h).
bench: deps build
	$(GO) test -run='^$$' -bench=. -benchtime=$(BENCHTIME) ./protocol/ ./mechs/... ./daemon/
	$(GO) run ./test/benchcmp -bin $(BIN) $(BENCHFLAGS)

# package builds dist/saslgate_<version>_amd64.deb and saslgate-<version>.x86_64.rpm
# (DIST=dir for another directory) from packaging/nfpm.yaml.
package: $(NFPM)
	@for f in systemd/saslgate.service systemd/saslgate.socket systemd/saslgate.tmpfiles; do \
	  [ -f $$f ] || { echo "package: $$f missing"; exit 1; }; done
	rm -rf $(DIST)/stage && mkdir -p $(DIST)/stage
	$(MAKE) --no-print-directory build BIN=$(DIST)/stage/saslgate VERSION=$(PKG_VERSION)
	gzip -9n < packaging/man/saslgate.8 > $(DIST)/stage/saslgate.8.gz
	gzip -9n < packaging/man/saslgate.conf.5 > $(DIST)/stage/saslgate.conf.5.gz
	export SASLGATE_VERSION=$(PKG_VERSION) SASLGATE_STAGE=$(DIST)/stage SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH); \
	for p in deb rpm; do $(NFPM) package -f packaging/nfpm.yaml -p $$p -t $(DIST)/ || exit 1; done
	rm -rf $(DIST)/stage

$(NFPM):
	mkdir -p $(@D)/nfpm-build
	GOBIN=$(abspath $(@D))/nfpm-build $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
	mv $(@D)/nfpm-build/nfpm $@ && rmdir $(@D)/nfpm-build

# soak runs the daemon for SOAKTIME (default 5m; 45s is a smoke test) with
# good clients looping while it faces 2,000 hostile connections, Dovecot
# and a PAM module failing, SIGHUP and then SIGTERM under load; it rewrites
# SOAK.md and SOAK.svg and fails when a goal is missed. Root; loopback and
# UNIX sockets only; not part of make test.
.PHONY: soak
soak: deps build
	$(GO) run ./test/soak -bin $(BIN) -d $(SOAKTIME) -out SOAK.md

clean:
	rm -rf bin dist
