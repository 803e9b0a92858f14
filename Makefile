# collabsync — make test runs everything; make demo shows the main job.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
COMMIT_TIME ?= $(shell git log -1 --format=%cI 2>/dev/null)
BUILDINFO := github.com/collabsync/collabsync/internal/buildinfo
LDFLAGS := -s -w -X main.version=$(VERSION) -X $(BUILDINFO).revision=$(REVISION) -X $(BUILDINFO).commitTime=$(COMMIT_TIME)
export PATH := /usr/local/go/bin:$(PATH)

# Packages: semver from the newest v* tag (v1.2.3 → 1.2.3; 4 commits after
# it → 1.2.3+4.gabcdef0); without a tag 0.0.0+g<commit>.
PKG_VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed -e 's/^v//' -e 's/-\([0-9]*\)-g/+\1.g/' | grep . || echo 0.0.0+g$$(git rev-parse --short HEAD 2>/dev/null || echo unknown))
PKGDIR ?= bin
NFPM ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all build test deps vet lint demo bench fuzz clean package install

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/collabsync ./cmd/collabsync

# collabsync_<version>_amd64.deb and collabsync-<version>.x86_64.rpm in
# PKGDIR, built by nfpm from packaging/nfpm.yaml (nfpm itself is built from
# source by the go command, no prebuilt binary).
package:
	@mkdir -p $(PKGDIR)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(PKG_VERSION) -X $(BUILDINFO).revision=$(REVISION) -X $(BUILDINFO).commitTime=$(COMMIT_TIME)" -o $(PKGDIR)/collabsync ./cmd/collabsync
	gzip -9n < docs/collabsync.1 > $(PKGDIR)/collabsync.1.gz
	sed 's|$${PKGDIR}|$(PKGDIR)|g' packaging/nfpm.yaml > $(PKGDIR)/nfpm.yaml
	PKG_VERSION=$(PKG_VERSION) $(NFPM) package --config $(PKGDIR)/nfpm.yaml --packager deb --target $(PKGDIR)/
	PKG_VERSION=$(PKG_VERSION) $(NFPM) package --config $(PKGDIR)/nfpm.yaml --packager rpm --target $(PKGDIR)/

# For sites without packages: the package's files under DESTDIR, the
# binary and the unit's ExecStart under PREFIX (default /usr/local).
install: build
	install -D -m 755 bin/collabsync $(DESTDIR)$(PREFIX)/bin/collabsync
	install -d $(DESTDIR)/etc/systemd/system $(DESTDIR)/usr/lib/sysusers.d $(DESTDIR)/usr/lib/tmpfiles.d
	sed 's|/usr/bin/collabsync|$(PREFIX)/bin/collabsync|g' systemd/collabsync.service > $(DESTDIR)/etc/systemd/system/collabsync.service
	install -m 644 systemd/collabsync.sysusers $(DESTDIR)/usr/lib/sysusers.d/collabsync.conf
	install -m 644 systemd/collabsync.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/collabsync.conf
	install -D -m 644 docs/collabsync.1 $(DESTDIR)$(PREFIX)/share/man/man1/collabsync.1
	install -D -m 644 configs/completion/collabsync.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/collabsync
	[ -e $(DESTDIR)/etc/collabsync/collabsync.yaml ] || install -D -m 640 configs/collabsync.example.yaml $(DESTDIR)/etc/collabsync/collabsync.yaml
	install -d $(DESTDIR)$(PREFIX)/share/doc/collabsync $(DESTDIR)$(PREFIX)/share/collabsync
	install -m 644 README.md CHANGELOG.md LICENSE docs/*.md $(DESTDIR)$(PREFIX)/share/doc/collabsync/
	cp -r configs/prometheus configs/grafana configs/ldap configs/hooks $(DESTDIR)$(PREFIX)/share/collabsync/
	install -d $(DESTDIR)$(PREFIX)/share/collabsync/systemd
	install -m 644 systemd/drop-ins/*.conf systemd/collabsync-userdb.tmpfiles $(DESTDIR)$(PREFIX)/share/collabsync/systemd/

deps:
	@.ci/install-deps

vet:
	$(GO) vet ./...

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

# The race detector needs cgo; the shipped binary does not.
test: deps lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

# The demo installs only what it uses (slapd, ldap-utils, libnss-extrausers).
demo: build
	@.ci/install-deps demo
	$(GO) run ./cmd/demo -bin bin/collabsync -dir var/demo

bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 120m ./...

# Runs of every fuzz target, FUZZTIME each (make test: 3s; the 10-minute
# runs are reported in the session notes). .ci/fuzz says how a crasher is
# told from Go 1.26's spurious fuzztime deadline.
FUZZTIME ?= 20s
fuzz:
	@GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz

clean:
	rm -rf bin var
