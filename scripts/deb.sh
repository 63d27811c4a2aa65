#!/usr/bin/env bash
# deb.sh - the Debian package of invpnd, made with dpkg-deb from what
# `make install` installs (no debhelper: dpkg-deb is on every Debian, and
# dpkg-shlibdeps comes with dpkg-dev, which build-essential pulls in).
#
# Usage: scripts/deb.sh [--profile release|debug] [--out DIR]
#
# Builds the binaries with cargo if it is there (a no-op when they are up
# to date), else uses those already built, and writes
# DIR/invpnd_VERSION_ARCH.deb (DIR: $CARGO_TARGET_DIR/debian, or
# target/debian), then prints its path. The maintainer is $DEBFULLNAME
# <$DEBEMAIL> if set, else the author of the last commit.
#
# What the package holds: /usr/sbin/invpnd and invpnctl, the man pages,
# the example configuration as /usr/share/doc/invpnd/examples/invpn.conf,
# the units invpnd.service and invpnd@.service, bash and zsh completion,
# and the empty directory /etc/invpn; postinst makes /var/lib/invpnd
# (mode 0700), where the node caches are kept. It ships no
# configuration file (so no conffiles): /etc/invpn/*.conf and the keys are
# the administrator's, and purging the package leaves them. It creates no
# user: by default the daemon runs as root, confined by its unit, and a
# user for it to switch to is the administrator's choice (INSTALL 2.1).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

profile=release
out=
while [ $# -gt 0 ]; do
    case $1 in
    --profile) profile=${2:?--profile needs release or debug}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $profile in
release) cargo_profile=(--release) ;;
debug) cargo_profile=() ;;
*) echo "deb.sh: --profile: release or debug, not $profile" >&2; exit 2 ;;
esac
for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
    command -v "$tool" >/dev/null || {
        echo "deb.sh: $tool missing (apt-get install dpkg-dev binutils, or scripts/ensure-deps.sh --deb)" >&2
        exit 1
    }
done

target=${CARGO_TARGET_DIR:-target}
builddir=$target/$profile
out=${out:-$target/debian}
if command -v cargo >/dev/null; then
    cargo build --locked --bins "${cargo_profile[@]}"
fi
for b in invpnd invpnctl; do
    [ -x "$builddir/$b" ] || { echo "deb.sh: $builddir/$b missing: build it first" >&2; exit 1; }
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
maintainer="${DEBFULLNAME:-}${DEBEMAIL:+ <$DEBEMAIL>}"
if [ -z "${DEBEMAIL:-}" ]; then
    maintainer=$(git log -1 --format='%an <%ae>' 2>/dev/null || true)
fi
[ -n "$maintainer" ] || { echo "deb.sh: set DEBFULLNAME and DEBEMAIL (no git history to take a maintainer from)" >&2; exit 1; }
# the date of the last commit, so that the same tree makes the same package
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$epoch

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/invpnd
mkdir -m 0755 "$root"
make -s install DESTDIR="$root" BUILDDIR="$builddir" PREFIX=/usr SBINDIR=/usr/sbin \
    MANDIR=/usr/share/man SYSCONFDIR=/etc UNITDIR=/lib/systemd/system \
    BASHCOMPDIR=/usr/share/bash-completion/completions \
    ZSHCOMPDIR=/usr/share/zsh/vendor-completions \
    EXAMPLE=/usr/share/doc/invpnd/examples/invpn.conf STATEDIR=/var/lib/invpnd >/dev/null

strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root"/usr/sbin/*
gzip -9n "$root"/usr/share/man/man*/*
# the cache's directory is made by postinst, with mode 0700 (dpkg wants 0755)
rmdir "$root/var/lib/invpnd" "$root/var/lib" "$root/var"
doc=$root/usr/share/doc/invpnd
gzip -9nc README >"$doc/README.gz"
overrides=$root/usr/share/lintian/overrides
mkdir -p "$overrides"
cat >"$overrides/invpnd" <<'EOF'
# An upgrade restarts the running daemons in place (systemctl kill
# --signal=USR2), a signal deb-systemd-invoke cannot send; a removal stops
# every instance of invpnd@.service, which it cannot enumerate.
invpnd: maintainer-script-calls-systemctl [postinst:*]
invpnd: maintainer-script-calls-systemctl [prerm:*]
# Rust binaries: no glibc functions to fortify.
invpnd: hardening-no-fortify-functions [usr/sbin/*]
EOF
{
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: invpnd
Comment: The binaries link statically the Rust crates listed in the
 source's Cargo.lock, each under its own licence (MIT, Apache-2.0, ISC,
 BSD or similar).

Files: *
Copyright: $(sed -n 's/^Copyright (c) //p' COPYING | head -n1)
License: MIT

License: MIT
EOF
    # the licence text after its title and copyright lines
    sed '1,/^Copyright/d' COPYING | sed '/./,$!d; s/^$/./; s/^/ /'
} >"$doc/copyright"
commit=$(git log -1 --format='%h %s' 2>/dev/null | cut -c1-60 || echo "a source tree")
cat <<EOF | gzip -9n >"$doc/changelog.gz"
invpnd ($version) unstable; urgency=medium

  * Built from $commit.

 -- $maintainer  $(date -R -u -d "@$epoch")
EOF

mkdir -m 0755 "$root/DEBIAN"
(cd "$stage" && mkdir debian && touch debian/control &&
    dpkg-shlibdeps -O "$root"/usr/sbin/invpnd "$root"/usr/sbin/invpnctl 2>/dev/null) >"$stage/shlibs"
depends="$(sed -n 's/^shlibs:Depends=//p' "$stage/shlibs"), adduser"
cat >"$root/DEBIAN/control" <<EOF
Package: invpnd
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --apparent-size "$root" | cut -f1)
Depends: $depends
Suggests: iproute2, graphviz
Section: net
Priority: optional
Description: decentralized layer-2 mesh VPN daemon
 invpnd joins this host to an invpn mesh: every node gets a TAP
 interface, and all of them together form one Ethernet segment, linked
 by mutually authenticated TLS over TCP. One CA defines the network, a
 node's certificate Common Name is its MAC address, and one seed address
 is enough to join. It speaks the wire protocol of invpn 0.4.
 .
 invpnctl makes the network's certificates and asks a running daemon for
 its status, links and routes, and traces the mesh. Units: invpnd.service
 for /etc/invpn/invpn.conf, invpnd@.service for /etc/invpn/NAME.conf.
EOF

cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
# After an upgrade, running daemons restart in place (SIGUSR2) on the new
# binary, keeping their interfaces; one whose configuration has become
# invalid refuses, logs why and keeps running. Nothing is enabled or
# started on a first installation: a node needs its keys and configuration.
# The system user invpn, which invpnd becomes once set up ([daemon] user;
# invpnd(8), PRIVILEGES), and the node caches' directory, private and its.
set -e
if [ "$1" = configure ]; then
    if ! getent passwd invpn >/dev/null; then
        adduser --system --group --no-create-home --home /var/lib/invpnd \
            --gecos "invpnd mesh VPN daemon" invpn >/dev/null
    fi
    [ -e /var/lib/invpnd ] || mkdir -m 0700 /var/lib/invpnd
    chown invpn:invpn /var/lib/invpnd
fi
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
    if [ -n "$2" ]; then
        for unit in $(systemctl list-units --plain --no-legend --state=active \
            'invpnd.service' 'invpnd@*.service' | awk '{print $1}'); do
            systemctl kill --kill-whom=main --signal=USR2 "$unit" || true
        done
    fi
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
# Removal stops the daemons (an upgrade keeps them, see postinst).
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop 'invpnd.service' 'invpnd@*.service' >/dev/null 2>&1 || true
fi
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
# Purging removes the node caches (/var/lib/invpnd) and the links that
# enabled the units; /etc/invpn, with the keys and configurations the
# administrator made, stays.
set -e
if [ "$1" = purge ]; then
    rm -rf /var/lib/invpnd
    # the system user goes with the package (no file of its is left)
    if getent passwd invpn >/dev/null; then
        if command -v deluser >/dev/null; then
            deluser --system invpn >/dev/null 2>&1 || true
        else
            userdel invpn >/dev/null 2>&1 || true
        fi
    fi
    if getent group invpn >/dev/null; then
        groupdel invpn >/dev/null 2>&1 || true
    fi
    for d in /etc/systemd/system/*.wants; do
        [ -d "$d" ] || continue
        for l in "$d"/invpnd.service "$d"/invpnd@*.service; do
            if [ -L "$l" ]; then rm -f "$l"; fi
        done
    done
fi
if [ "$1" = remove ] || [ "$1" = purge ]; then
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
fi
exit 0
EOF
chmod 0755 "$root"/DEBIAN/postinst "$root"/DEBIAN/prerm "$root"/DEBIAN/postrm
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/invpnd_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
