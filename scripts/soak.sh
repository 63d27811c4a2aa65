#!/usr/bin/env bash
# soak.sh - push iperf3 through a three-node mesh for a long time and report
# the daemons' memory at the start and at the end, and any errors (run as
# root, usually through `make soak`). A benchmark, not a test.
#
# Usage: scripts/soak.sh [SECONDS]   (default 600)
# Topology: three namespaces on one bridge (198.18.20.0/24); B and C seeded
# with A. Traffic rotates every 30 s between the pairs A->C, C->B, B->A, in
# TCP (4 streams) and UDP (at 1 Gbit/s) turns, so that every node sends,
# relays and receives. RSS is sampled at the start, after the first six runs
# (every buffer in use by then) and at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${INVPND:-$PWD/target/release/invpnd}
DURATION=${1:-600}
[ "$(id -u)" = 0 ] || { echo "soak: needs root" >&2; exit 1; }
[ -x "$BIN" ] || { echo "soak: no $BIN (run make)" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "soak: needs iperf3" >&2; exit 1; }

TAG=ivs$$
NAMES=(A B C)
NS=("${TAG}a" "${TAG}b" "${TAG}c")
SW="${TAG}sw"
MACS=(02:50:56:00:20:01 02:50:56:00:20:02 02:50:56:00:20:03)
WORK=$(mktemp -d /tmp/invpnd-soak.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    for ns in "${NS[@]}" "$SW"; do ip netns del "$ns" 2>/dev/null || true; done
    echo "soak: logs in $WORK" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
(
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 90 \
        -subj "/CN=soak CA" -keyout ca.key -out ca.crt \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    printf 'basicConstraints=critical,CA:FALSE\n' > node.ext
    for i in 0 1 2; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=${MACS[$i]}" \
            -keyout "${NAMES[$i]}.key" -out "${NAMES[$i]}.csr"
        openssl x509 -req -in "${NAMES[$i]}.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 90 \
            -extfile node.ext -out "${NAMES[$i]}.crt"
    done
) >"$WORK/openssl.log" 2>&1
for i in 0 1 2; do
    ns=${NS[$i]} n=${NAMES[$i]}
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "${TAG}v$i" netns "$ns" type veth peer name "${TAG}p$i" netns "$SW"
    ip -n "$SW" link set "${TAG}p$i" master br0 up
    ip -n "$ns" addr add "198.18.20.$((i + 1))/24" dev "${TAG}v$i"
    ip -n "$ns" link set "${TAG}v$i" up
    printf '#!/bin/sh\nip addr add 198.19.20.%s/24 dev "$INTERFACE"\n' $((i + 1)) > "$WORK/$n-up.sh"
    chmod +x "$WORK/$n-up.sh"
    {
        printf '[ssl]\nkey=%s.key\ncert=%s.crt\nca=ca.crt\n[network]\nbind=198.18.20.%s\ncache=%s.cache\n' "$n" "$n" $((i + 1)) "$n"
        [ "$i" != 0 ] && echo "init=${MACS[0]}@198.18.20.1:41744"
        printf '[interface]\nname=invpn0\nup=%s-up.sh\n[control]\nsocket=%s.sock\n' "$n" "$n"
    } > "$WORK/$n.conf"
    ip netns exec "$ns" "$BIN" -c "$WORK/$n.conf" >"$WORK/$n.log" 2>&1 </dev/null &
    PIDS+=($!)
    [ "$i" = 0 ] && sleep 0.3
done
for _ in $(seq 100); do
    ip netns exec "${NS[1]}" ping -c1 -W1 -q 198.19.20.3 >/dev/null 2>&1 && break
    sleep 0.2
done
rss() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM:/{print $2}' "/proc/$1/status"; }
rss_all() { for p in "${PIDS[@]:0:3}"; do printf '%s ' "$(rss "$p" 2>/dev/null || echo -)"; done; }
declare -a START WARM=(- - -)
for i in 0 1 2; do START[$i]=$(rss "${PIDS[$i]}"); done
for i in 0 1 2; do
    ip netns exec "${NS[$i]}" iperf3 -s -D -p 5201 --logfile "$WORK/iperf-server-${NAMES[$i]}.log" \
        --pidfile "$WORK/iperf-server-${NAMES[$i]}.pid"
done
for i in 0 1 2; do
    for _ in $(seq 50); do [ -s "$WORK/iperf-server-${NAMES[$i]}.pid" ] && break; sleep 0.1; done
    PIDS+=("$(cat "$WORK/iperf-server-${NAMES[$i]}.pid")")
done
PAIRS=("0 2" "2 1" "1 0")
end=$((SECONDS + DURATION))
turn=0 failures=0 total_gbit=0
while [ $SECONDS -lt $end ]; do
    read -r s d <<<"${PAIRS[$((turn % 3))]}"
    len=$(( end - SECONDS < 30 ? end - SECONDS : 30 ))
    [ "$len" -lt 2 ] && break
    if [ $((turn / 3 % 2)) = 0 ]; then args=(-P 4); kind=TCP; else args=(-u -b 1G); kind=UDP; fi
    if out=$(ip netns exec "${NS[$s]}" timeout $((len + 20)) iperf3 -c "198.19.20.$((d + 1))" -t "$len" "${args[@]}" -f g 2>&1); then
        # the figure before "Gbits/sec" on the (last) receiver line
        rate=$(echo "$out" | awk '/receiver/ { for (i = 1; i < NF; i++) if ($(i + 1) ~ /bits\/sec/) r = $i } END { print r }')
        echo "$(date +%T) ${NAMES[$s]}->${NAMES[$d]} $kind ${len}s: ${rate:-?} Gbit/s; RSS KiB: $(rss_all)"
    else
        failures=$((failures + 1))
        echo "$(date +%T) ${NAMES[$s]}->${NAMES[$d]} $kind: iperf3 FAILED: $(echo "$out" | tail -1)"
    fi
    turn=$((turn + 1))
    # after one TCP and one UDP turn per pair every buffer has been used:
    # growth after this point, not before, would be a leak
    if [ $turn = 6 ]; then for i in 0 1 2; do WARM[$i]=$(rss "${PIDS[$i]}"); done; fi
done
echo
echo "| node | RSS at start, KiB | RSS after 6 runs, KiB | RSS at end, KiB | peak RSS, KiB | ERROR lines | WARN lines |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for i in 0 1 2; do
    p=${PIDS[$i]}
    kill -0 "$p" 2>/dev/null || { echo "| ${NAMES[$i]} | ${START[$i]} | ${WARM[$i]} | DIED | - | - | - |"; failures=$((failures + 1)); continue; }
    echo "| ${NAMES[$i]} | ${START[$i]} | ${WARM[$i]} | $(rss "$p") | $(hwm "$p") | $(grep -c ERROR "$WORK/${NAMES[$i]}.log" || true) | $(grep -c WARN "$WORK/${NAMES[$i]}.log" || true) |"
done
echo
echo "duration ${DURATION}s, $turn iperf3 runs, $failures failures"
[ $failures = 0 ]
