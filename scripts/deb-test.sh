#!/usr/bin/env bash
# deb-test.sh - the Debian package end to end, as root: build it
# (scripts/deb.sh), check that make uninstall removes what make install
# installs (into a temporary DESTDIR), check the package with lintian if
# installed, install it with dpkg -i (and again, as an upgrade), run the
# installed invpnd -V and invpnd -t on the packaged
# example configuration (pointed at a key, certificate and CA that the
# installed invpnctl makes in a temporary directory), check the units with
# systemd-analyze if present, then remove and purge it and check that
# nothing it installed is left.
#
# Usage: scripts/deb-test.sh [--profile release|debug] (default release;
# CI uses debug, the binaries its tests already built)
#
# It refuses to run where it could harm the machine: an invpnd package
# already installed, or any file the package would install (or the
# /var/lib/invpnd that purging deletes) already present. It removes only
# what it installed, also when it fails.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case ${1:-} in
--profile) profile=${2:?--profile needs release or debug} ;;
"") ;;
*) echo "deb-test: usage: scripts/deb-test.sh [--profile release|debug]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "deb-test: needs root (dpkg -i)" >&2; exit 1; }

fail() { echo "deb-test: FAILED: $*" >&2; exit 1; }
step() { echo "deb-test: $*"; }

tmp=$(mktemp -d)
installed=no
cleanup() {
    if [ $installed = yes ]; then
        dpkg --purge invpnd >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

deb=$(scripts/deb.sh --profile "$profile" --out "$tmp/out" | tail -n1)
[ -f "$deb" ] || fail "scripts/deb.sh made no package"
step "built $deb ($(du -k "$deb" | cut -f1) KiB)"

# make uninstall removes what make install (which the package is made
# from) installs
target=${CARGO_TARGET_DIR:-target}
make -s install DESTDIR="$tmp/mi" BUILDDIR="$target/$profile" >/dev/null
make -s uninstall DESTDIR="$tmp/mi" BUILDDIR="$target/$profile" >/dev/null
left=$(find "$tmp/mi" ! -type d)
[ -z "$left" ] || fail "make uninstall left: $left"
step "make install, then make uninstall: no file left"

if command -v lintian >/dev/null; then
    # errors fail the test; warnings are shown
    lintian --pedantic --suppress-tags package-supports-alternative-init-but-no-init.d-script \
        "$deb" 2>&1 | grep -v '^running with root' | tee "$tmp/lintian" || true
    if grep -q '^E:' "$tmp/lintian"; then fail "lintian errors"; fi
    step "lintian: $(grep -c '^[EW]:' "$tmp/lintian" || true) error(s) and warning(s)"
else
    step "lintian not installed: not run"
fi

# what the package must hold
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|; s|/$||' | grep -v '^$' >"$tmp/paths"
for want in /usr/sbin/invpnd /usr/sbin/invpnctl /usr/share/man/man5/invpn.conf.5.gz \
    /usr/share/man/man8/invpnd.8.gz /usr/share/man/man8/invpnctl.8.gz \
    /usr/share/doc/invpnd/examples/invpn.conf /usr/share/doc/invpnd/copyright \
    /usr/share/doc/invpnd/changelog.gz /lib/systemd/system/invpnd.service \
    /lib/systemd/system/invpnd@.service /usr/share/bash-completion/completions/invpnctl \
    /usr/share/zsh/vendor-completions/_invpnctl; do
    grep -qx "$want" "$tmp/paths" || fail "$want is not in the package"
done
if dpkg-deb -c "$deb" | grep -q ' \./etc/.*[^/]$'; then
    fail "a file in /etc (the package ships no configuration)"
fi

# never over something that is already there
status=$(dpkg-query -W -f='${db:Status-Status}' invpnd 2>/dev/null || true)
case $status in "" | not-installed) ;; *) fail "an invpnd package is $status: not touching it" ;; esac
[ -e /var/lib/invpnd ] && fail "/var/lib/invpnd exists (purging would delete it): not touching it"
while read -r p; do
    if [ -e "$p" ] && [ ! -d "$p" ]; then fail "$p exists: not overwriting it"; fi
done <"$tmp/paths"
# the directories to be left afterwards: those there before
while read -r p; do [ -d "$p" ] && echo "$p"; done <"$tmp/paths" >"$tmp/dirs-before"

step "dpkg -i"
installed=yes
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i"; }
version=$(dpkg-deb -f "$deb" Version)
[ "$(/usr/sbin/invpnd -V)" = "invpnd $version" ] || fail "invpnd -V: $(/usr/sbin/invpnd -V)"
[ "$(/usr/sbin/invpnctl -V)" = "invpnctl $version" ] || fail "invpnctl -V"
[ "$(stat -c %a /var/lib/invpnd)" = 700 ] || fail "/var/lib/invpnd is not mode 0700"
cmp -s /usr/share/bash-completion/completions/invpnctl <(/usr/sbin/invpnctl completion bash) ||
    fail "the bash completion is not invpnctl's"
step "invpnd -V: $(/usr/sbin/invpnd -V)"
# the same package again: an upgrade (prerm upgrade, postinst configure
# with the old version)
dpkg -i "$deb" >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -i over itself"; }
[ "$(/usr/sbin/invpnd -V)" = "invpnd $version" ] || fail "invpnd -V after an upgrade"
step "dpkg -i again (an upgrade): OK"

# the example, as an administrator would start from it: a CA, a node's
# key and certificate from invpnctl, and the [ssl] lines pointing at them
node=$tmp/node
mkdir -m 0700 "$node"
/usr/sbin/invpnctl ca new --dir "$node/ca" --name "deb-test CA" >/dev/null
/usr/sbin/invpnctl cert new --ca-dir "$node/ca" --mac 02:50:56:00:00:01 --out "$node/invpn" >/dev/null
cp "$node/ca/ca.crt" "$node/invpn_ca.crt"
sed -e "s|^key = /etc/invpn/|key = $node/|; s|^cert = /etc/invpn/|cert = $node/|; s|^ca = /etc/invpn/|ca = $node/|" \
    /usr/share/doc/invpnd/examples/invpn.conf >"$node/invpn.conf"
[ "$(diff /usr/share/doc/invpnd/examples/invpn.conf "$node/invpn.conf" | grep -c '^>')" = 3 ] ||
    fail "the example's [ssl] lines were not found"
getent passwd invpn >/dev/null || fail "postinst made no user invpn"
[ "$(stat -c %U /var/lib/invpnd)" = invpn ] || fail "/var/lib/invpnd is not invpn's"
# the daemon reads its files again as invpn (reloads, restarts in place)
chmod 0711 "$tmp"
chown -R invpn:invpn "$node"
/usr/sbin/invpnd -t -c "$node/invpn.conf" >"$tmp/check" 2>&1 || { cat "$tmp/check"; fail "invpnd -t on the example"; }
grep -q "^runs as:         user invpn (uid " "$tmp/check" || fail "invpnd -t: runs as: $(cat "$tmp/check")"
grep -q "^configuration $node/invpn.conf: OK" "$tmp/check" || fail "invpnd -t: $(cat "$tmp/check")"
grep -q "^node MAC:        02:50:56:00:00:01" "$tmp/check" || fail "invpnd -t: $(cat "$tmp/check")"
grep -q "^node cache:      /var/lib/invpnd/invpn.cache" "$tmp/check" || fail "invpnd -t: cache"
step "invpnd -t on the example: OK"

if command -v systemd-analyze >/dev/null && command -v man >/dev/null; then
    for u in invpnd.service invpnd@.service; do
        systemd-analyze verify "/lib/systemd/system/$u" >"$tmp/verify" 2>&1 ||
            { cat "$tmp/verify"; fail "systemd-analyze verify $u"; }
    done
    step "systemd-analyze verify: both units OK"
fi

step "dpkg -r, dpkg --purge"
dpkg -r invpnd >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg -r"; }
[ ! -e /usr/sbin/invpnd ] || fail "dpkg -r left /usr/sbin/invpnd"
dpkg --purge invpnd >"$tmp/dpkg.log" 2>&1 || { cat "$tmp/dpkg.log"; fail "dpkg --purge"; }
installed=no
status=$(dpkg-query -W -f='${db:Status-Status}' invpnd 2>/dev/null || true)
case $status in "" | not-installed) ;; *) fail "dpkg still has invpnd: $status" ;; esac
! getent passwd invpn >/dev/null || fail "dpkg --purge left the user invpn"
left=
while read -r p; do
    if [ -e "$p" ] && ! grep -qx "$p" "$tmp/dirs-before"; then left="$left $p"; fi
done <"$tmp/paths"
[ -e /var/lib/invpnd ] && left="$left /var/lib/invpnd"
[ -z "$left" ] || fail "left after purge:$left"
step "OK: installed, checked and purged; nothing left"
