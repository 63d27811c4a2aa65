# invpnd - build, test, demo, install.
#
#   make              release build (target/release/invpnd and invpnctl)
#   make test         the whole test suite (namespace tests need root)
#   make demo         a three-node mesh in network namespaces (root)
#   make install      PREFIX=/usr/local DESTDIR= (binaries, man pages,
#                     example configuration, systemd units, bash and zsh
#                     completion; run make first)
#   make deb          a Debian package in target/debian/ (release build;
#                     DEB_PROFILE=debug for the debug one)
#   make deb-test     builds the package, installs it with dpkg -i, checks
#                     invpnd -V and -t on its example, purges it (root)
#   make bench        criterion benchmarks of the hot paths
#   make bench-net    iperf3 through invpnd and peer VPNs (root)
#   make bench-failover  outage when a relay crashes or is cut off (root)
#   make bench-coldstart 40 real nodes from one seed each, started at once,
#                     INVPN_COLD_STARTS times (10): time until all route (root)
#   make bench-direct iperf3 between two nodes behind one relay: through the
#                     relay, with a direct link on demand, and as neighbours
#                     (root; INVPN_DIRECT_ROUNDS=3)
#   make bench-wan    iperf3 and ping under load through invpnd and peer VPNs
#                     over emulated WAN paths (delay, loss, rate, jitter; reno
#                     and bbr), ~45 min (root); BENCH_WAN_ARGS= for
#                     scripts/bench-wan.sh options (e.g. -c 1 -C bbr -r 1)
#   make sim          protocol scale figures from the mesh simulator (~3 min)
#   make fuzz         the fuzz targets, FUZZ_SECONDS each (default 60)
#   make soak         iperf3 through a three-node mesh, SOAK_SECONDS (600) (root)
#   make lint         rustfmt check and clippy with warnings as errors

PREFIX      ?= /usr/local
DESTDIR     ?=
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
SYSCONFDIR  ?= /etc
UNITDIR     ?= /lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
EXAMPLE     ?= $(SYSCONFDIR)/invpn/invpn.conf.example
# the node cache's directory ([network] cache), so that invpnd -t passes
# before the first start (the unit's StateDirectory= makes it too)
STATEDIR    ?= /var/lib/invpnd
CARGO       ?= cargo
# where `make` leaves the binaries (cargo's CARGO_TARGET_DIR is honoured)
BUILDDIR    ?= $(or $(CARGO_TARGET_DIR),target)/release
BINARIES    := invpnd invpnctl
UNITS       := etc/invpnd.service etc/invpnd@.service
MAN5        := man/invpn.conf.5
MAN8        := man/invpnd.8 man/invpnctl.8
PEER_BENCH  ?= scripts/peer-bench.sh

.PHONY: all build test demo install uninstall deb deb-test bench bench-net bench-failover bench-coldstart bench-direct bench-wan wanem sim fuzz soak lint clean deps

all: build

build:
	$(CARGO) build --release --locked

deps:
	scripts/ensure-deps.sh

# the WAN tests run the emulator example, which --all-targets builds only
# as its unit tests: build the program first
test: deps
	$(CARGO) build --locked --example wanem
	$(CARGO) test --locked --all-targets

demo: deps build
	scripts/ensure-deps.sh --optional || true
	scripts/demo.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

bench:
	$(CARGO) bench --locked

bench-net: build
	@test -x "$(PEER_BENCH)" || { echo "peer-bench.sh not found at $(PEER_BENCH) (set PEER_BENCH=...)"; exit 1; }
	$(PEER_BENCH) --install -o $(CURDIR)/bench-results/peers.md raw invpnd invpnd_jumbo tinc_udp tinc_tcp ovpn_aes256gcm wggo

SOAK_SECONDS ?= 600
soak: deps build
	scripts/soak.sh $(SOAK_SECONDS)

FUZZ_SECONDS ?= 60
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

sim:
	$(CARGO) run --release --locked --example mesh_sim -- 10 50 200 1000
	$(CARGO) run --release --locked --example mesh_sim -- --dialled 40 100 300 1000

bench-failover: deps build
	scripts/bench-failover.sh -r 5

bench-coldstart: deps
	$(CARGO) test --release --locked --test scale -- --ignored --nocapture --test-threads=1

bench-direct: deps
	$(CARGO) test --release --locked --test direct -- --ignored --nocapture --test-threads=1

# the userspace WAN emulator (examples/wanem.rs)
wanem:
	$(CARGO) build --release --locked --example wanem

BENCH_WAN_ARGS ?=
bench-wan: build wanem
	scripts/bench-wan.sh $(BENCH_WAN_ARGS)

# install does not build (root often has no Rust toolchain): make, then
# make install.
install:
	@for b in $(BINARIES); do test -x $(BUILDDIR)/$$b || { echo "$(BUILDDIR)/$$b missing: run make first"; exit 1; }; done
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	for b in $(BINARIES); do install -m 0755 $(BUILDDIR)/$$b $(DESTDIR)$(SBINDIR)/$$b; done
	install -m 0644 $(MAN5) $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/invpn $(DESTDIR)$(dir $(EXAMPLE))
	install -d -m 0700 $(DESTDIR)$(STATEDIR)
	install -m 0644 etc/invpn.conf $(DESTDIR)$(EXAMPLE)
	install -d $(DESTDIR)$(UNITDIR)
	for u in $(UNITS); do sed 's|/usr/sbin/|$(SBINDIR)/|g' $$u > $(DESTDIR)$(UNITDIR)/$${u#etc/}; chmod 0644 $(DESTDIR)$(UNITDIR)/$${u#etc/}; done
	install -d $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR)
	$(BUILDDIR)/invpnctl completion bash > $(DESTDIR)$(BASHCOMPDIR)/invpnctl
	$(BUILDDIR)/invpnctl completion zsh > $(DESTDIR)$(ZSHCOMPDIR)/_invpnctl
	chmod 0644 $(DESTDIR)$(BASHCOMPDIR)/invpnctl $(DESTDIR)$(ZSHCOMPDIR)/_invpnctl

uninstall:
	for b in $(BINARIES); do rm -f $(DESTDIR)$(SBINDIR)/$$b; done
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man5/,$(notdir $(MAN5)))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(MAN8)))
	rm -f $(DESTDIR)$(EXAMPLE) $(addprefix $(DESTDIR)$(UNITDIR)/,$(notdir $(UNITS)))
	rm -f $(DESTDIR)$(BASHCOMPDIR)/invpnctl $(DESTDIR)$(ZSHCOMPDIR)/_invpnctl
	-rmdir $(DESTDIR)$(STATEDIR) 2>/dev/null

# the Debian package (scripts/deb.sh: made with dpkg-deb from make install;
# it builds the binaries first); DEB_PROFILE=debug packages a debug build
DEB_PROFILE ?= release
deb: deps
	scripts/deb.sh --profile $(DEB_PROFILE)

# install it, check it, purge it (root; CI runs it on its debug build)
deb-test: deps
	scripts/deb-test.sh --profile $(DEB_PROFILE)

clean:
	$(CARGO) clean
