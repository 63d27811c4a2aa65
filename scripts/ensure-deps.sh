#!/usr/bin/env bash
# ensure-deps.sh - make sure the tools the tests and the demo use are here.
# As root with apt-get, installs what is missing (Debian/Ubuntu packages);
# otherwise lists it and fails. Usage: scripts/ensure-deps.sh [--optional]
# (--optional: also graphviz, used by the demo when present, and lintian,
# which make deb-test runs when present).
set -euo pipefail

need=(ip:iproute2 ping:iputils-ping openssl:openssl ss:iproute2 kill:procps timeout:coreutils socat:socat ethtool:ethtool iperf3:iperf3)
# make deb and make deb-test
need+=(dpkg-deb:dpkg dpkg-shlibdeps:dpkg-dev strip:binutils gzip:gzip)
[ "${1:-}" = --optional ] && need+=(dot:graphviz lintian:lintian)

missing=()
for pair in "${need[@]}"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# the tests read `invpnctl metrics` with the Python prometheus_client
# parser (any python3 on the PATH, or Debian's)
if ! { python3 -c 'import prometheus_client' || /usr/bin/python3 -c 'import prometheus_client'; } >/dev/null 2>&1; then
    missing+=(python3-prometheus-client)
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "ensure-deps: cargo not found: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
fi
[ ${#missing[@]} -eq 0 ] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "ensure-deps: missing packages: ${missing[*]} (install them, or run as root with apt-get)" >&2
    exit 1
fi
