#!/usr/bin/env bash
# demo.sh - a real three-node invpnd mesh in network namespaces (run as root,
# usually through `make demo`).
#
# Three namespaces share an underlay switch (a bridge in a fourth namespace,
# 198.18.10.0/24). Node A is the seed; B and C are told only about A, learn
# about each other from A's announcements, and link directly: a full mesh.
# The demo pings every pair over the overlay (198.19.10.0/24 and fd00:10::/64),
# runs iperf3 between B and C if it is installed, and cleans up everything it
# made, keeping only the work directory with the logs.
set -euo pipefail

cd "$(dirname "$0")/.."
BIN=${INVPND:-$PWD/target/release/invpnd}
CTL=${INVPNCTL:-$PWD/target/release/invpnctl}
[ "$(id -u)" = 0 ] || { echo "demo: needs root (network namespaces and TAP interfaces)" >&2; exit 1; }
[ -x "$BIN" ] && [ -x "$CTL" ] || { echo "demo: no $BIN or $CTL (run make)" >&2; exit 1; }

TAG=ivd$$
NAMES=(A B C)
NS=("${TAG}a" "${TAG}b" "${TAG}c")
SW="${TAG}sw"
MACS=(02:50:56:00:10:01 02:50:56:00:10:02 02:50:56:00:10:03)
WORK=$(mktemp -d /tmp/invpnd-demo.XXXXXX)
PIDS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    for ns in "${NS[@]}" "$SW"; do ip netns del "$ns" 2>/dev/null || true; done
    echo
    echo "demo: namespaces removed; configurations and logs kept in $WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "underlay: three namespaces on one switch (198.18.10.0/24)"
ip netns add "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for i in 0 1 2; do
    ns=${NS[$i]}
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "${TAG}v$i" netns "$ns" type veth peer name "${TAG}p$i" netns "$SW"
    ip -n "$SW" link set "${TAG}p$i" master br0 up
    ip -n "$ns" addr add "198.18.10.$((i + 1))/24" dev "${TAG}v$i"
    ip -n "$ns" link set "${TAG}v$i" up
    echo "node ${NAMES[$i]}: namespace $ns, underlay 198.18.10.$((i + 1)), MAC ${MACS[$i]}"
done

say "certificates with invpnctl: a CA and one certificate per node (CN = the node's MAC)"
"$CTL" ca new --dir "$WORK/ca" --name "invpnd demo CA" --days 90
for i in 0 1 2; do
    "$CTL" cert new --ca-dir "$WORK/ca" --mac "${MACS[$i]}" --out "$WORK/${NAMES[$i]}" --days 90
done
cp "$WORK/ca/ca.crt" "$WORK/ca.crt"
"$CTL" cert show "$WORK/A.crt"

say "starting invpnd on each node (B and C know only A)"
for i in 0 1 2; do
    n=${NAMES[$i]}
    cat > "$WORK/$n-up.sh" <<UP
#!/bin/sh
ip addr add 198.19.10.$((i + 1))/24 dev "\$INTERFACE"
ip addr add fd00:10::$((i + 1))/64 dev "\$INTERFACE" nodad
UP
    chmod +x "$WORK/$n-up.sh"
    {
        echo "[ssl]"
        echo "key = $n.key"
        echo "cert = $n.crt"
        echo "ca = ca.crt"
        echo "[network]"
        echo "bind = 198.18.10.$((i + 1))"
        echo "cache = $n.cache"
        [ "$i" != 0 ] && echo "init = ${MACS[0]}@198.18.10.1:41744"
        echo "[interface]"
        echo "name = invpn0"
        echo "up = $n-up.sh"
        echo "[control]"
        echo "socket = $n.sock"
        if [ "$i" = 0 ]; then echo "metrics = 127.0.0.1:9561"; fi
        # the demo's files are root's, in a private directory
        echo "[daemon]"
        echo "user = root"
    } > "$WORK/$n.conf"
    ip netns exec "${NS[$i]}" "$BIN" -c "$WORK/$n.conf" >"$WORK/$n.log" 2>&1 </dev/null &
    PIDS+=($!)
    echo "node $n: pid ${PIDS[$i]}, config $WORK/$n.conf, log $WORK/$n.log"
    [ "$i" = 0 ] && sleep 0.3
done

links() { grep -c "link up" "$WORK/$1.log" 2>/dev/null || true; }
for _ in $(seq 100); do
    [ "$(links B)" -ge 2 ] && [ "$(links C)" -ge 2 ] && break
    sleep 0.1
done
say "links (from the logs)"
for n in "${NAMES[@]}"; do
    grep -h "link up" "$WORK/$n.log" | sed "s/^[^ ]* *[A-Z]* */  $n: /"
done

say "ping across the mesh, IPv4 and IPv6"
fail=0
for i in 0 1 2; do
    for j in 0 1 2; do
        [ "$i" = "$j" ] && continue
        for dst in "198.19.10.$((j + 1))" "fd00:10::$((j + 1))"; do
            ok=0
            for _ in $(seq 20); do
                ip netns exec "${NS[$i]}" ping -c 1 -W 1 -q "$dst" >/dev/null 2>&1 && { ok=1; break; }
                sleep 0.25
            done
            if [ $ok = 1 ]; then
                rtt=$(ip netns exec "${NS[$i]}" ping -c 3 -i 0.2 -q "$dst" | sed -n 's/^rtt .* = [0-9.]*\/\([0-9.]*\)\/.*/\1/p')
                printf '  %s -> %s (%s): ok, rtt %s ms\n' "${NAMES[$i]}" "${NAMES[$j]}" "$dst" "$rtt"
            else
                printf '  %s -> %s (%s): FAILED\n' "${NAMES[$i]}" "${NAMES[$j]}" "$dst"
                fail=1
            fi
        done
    done
done

if command -v iperf3 >/dev/null 2>&1; then
    say "iperf3 B -> C over the overlay (3 s)"
    ip netns exec "${NS[2]}" iperf3 -s -1 -B 198.19.10.3 >/dev/null 2>&1 &
    srv=$!
    PIDS+=("$srv")
    sleep 0.5
    ip netns exec "${NS[1]}" timeout 20 iperf3 -c 198.19.10.3 -t 3 -f m | grep -E "sender|receiver" || true
    wait "$srv" 2>/dev/null || true
else
    echo "(iperf3 not installed: throughput skipped)"
fi

say "the mesh seen from A (invpnctl over A's control socket)"
"$CTL" --socket "$WORK/A.sock" status
echo
"$CTL" --socket "$WORK/A.sock" links
echo
"$CTL" --socket "$WORK/A.sock" routes
say "invpnctl metrics: the Prometheus text format, a few of its lines"
"$CTL" --socket "$WORK/A.sock" metrics | grep -E '^invpn_(build_info|links|routes|link_rtt_seconds|link_sent_bytes_total|peer_certificate_expiry_timestamp_seconds)[ {]' || true
if command -v curl >/dev/null 2>&1; then
    echo "(the same over HTTP, as a Prometheus server scrapes A's [control] metrics = 127.0.0.1:9561:)"
    ip netns exec "${NS[0]}" curl -sS -i http://127.0.0.1:9561/metrics | grep -E '^(HTTP/|Content-Type:|invpn_links )' || true
fi
say "invpnctl top: one frame (live and refreshed every second on a terminal)"
"$CTL" --socket "$WORK/A.sock" top -n 1
say "invpnctl trace: every node answers with its links and routes"
"$CTL" --socket "$WORK/A.sock" trace --wait 1
say "invpnctl graph (Graphviz)"
"$CTL" --socket "$WORK/A.sock" graph --wait 1 | tee "$WORK/mesh.dot"
if command -v dot >/dev/null 2>&1; then
    dot -Tsvg "$WORK/mesh.dot" -o "$WORK/mesh.svg" && echo "rendered: $WORK/mesh.svg"
fi

say "logs"
for n in "${NAMES[@]}"; do echo "  $WORK/$n.log"; done
[ $fail = 0 ] || { echo "demo: some pings failed" >&2; exit 1; }
echo "demo: the mesh carried IPv4 and IPv6 between every pair of nodes"
