#!/usr/bin/env bash
# bench-failover.sh - how long traffic stops when a relay fails (run as root,
# usually through `make bench-failover`).
#
# A diamond of four namespaces, A-{B,C}-D: A and D reach each other only
# through B or C. A pings D every 10 ms; then the relay carrying the traffic
# either crashes (SIGKILL: the kernel closes its sockets) or is cut off
# silently (its veth ends set down: no FIN, no RST). The outage is the
# longest gap between two answers. Each scenario runs ROUNDS times (default 3)
# with the default announce interval (5 s) unless INTERVAL is set.
#
# Usage: scripts/bench-failover.sh [-r ROUNDS] [-i INTERVAL]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${INVPND:-$PWD/target/release/invpnd}
ROUNDS=3
INTERVAL=5s
while getopts "r:i:" o; do
    case $o in r) ROUNDS=$OPTARG;; i) INTERVAL=$OPTARG;; *) exit 2;; esac
done
[ "$(id -u)" = 0 ] || { echo "bench-failover: needs root" >&2; exit 1; }
[ -x "$BIN" ] || { echo "bench-failover: no $BIN (run make)" >&2; exit 1; }

TAG=ivf$$
WORK=$(mktemp -d /tmp/invpnd-failover.XXXXXX)
NS=("${TAG}a" "${TAG}b" "${TAG}c" "${TAG}d")
MACS=(02:50:56:00:f0:01 02:50:56:00:f0:02 02:50:56:00:f0:03 02:50:56:00:f0:04)
PIDS=(0 0 0 0)

stop_all() {
    for p in "${PIDS[@]}"; do [ "$p" != 0 ] && kill -KILL "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do [ "$p" != 0 ] && wait "$p" 2>/dev/null || true; done
    PIDS=(0 0 0 0)
}
teardown() {
    stop_all
    for ns in "${NS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
cleanup() {
    local rc=$?
    trap - EXIT
    teardown
    echo "bench-failover: logs in $WORK" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(
    cd "$WORK"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 90 \
        -subj "/CN=failover CA" -keyout ca.key -out ca.crt \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    printf 'basicConstraints=critical,CA:FALSE\n' > node.ext
    for i in 0 1 2 3; do
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=${MACS[$i]}" \
            -keyout "n$i.key" -out "n$i.csr"
        openssl x509 -req -in "n$i.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 90 \
            -extfile node.ext -out "n$i.crt"
    done
) >"$WORK/openssl.log" 2>&1

# veth k joins nodes LINKS[k]; node i gets 198.18.(k+1).(i+1)
LINKS=("0 1" "0 2" "1 3" "2 3")
setup() {
    for i in 0 1 2 3; do ip netns add "${NS[$i]}"; ip -n "${NS[$i]}" link set lo up; done
    for k in 0 1 2 3; do
        read -r a b <<<"${LINKS[$k]}"
        ip link add "${TAG}${k}x" netns "${NS[$a]}" type veth peer name "${TAG}${k}y" netns "${NS[$b]}"
        ip -n "${NS[$a]}" addr add "198.18.$((k + 1)).$((a + 1))/24" dev "${TAG}${k}x"
        ip -n "${NS[$b]}" addr add "198.18.$((k + 1)).$((b + 1))/24" dev "${TAG}${k}y"
        ip -n "${NS[$a]}" link set "${TAG}${k}x" up
        ip -n "${NS[$b]}" link set "${TAG}${k}y" up
    done
}
start() { # node init...
    local i=$1; shift
    {
        printf '[ssl]\nkey=n%s.key\ncert=n%s.crt\nca=ca.crt\n[network]\ncache=n%s.cache\nannounce_interval=%s\n' "$i" "$i" "$i" "$INTERVAL"
        [ $# -gt 0 ] && echo "init=$(IFS=,; echo "$*")"
        printf '[interface]\nname=inv\nup=up%s.sh\n[control]\nsocket=n%s.sock\n' "$i" "$i"
    } > "$WORK/n$i.conf"
    printf '#!/bin/sh\nip addr add 198.19.0.%s/24 dev "$INTERFACE"\n' $((i + 1)) > "$WORK/up$i.sh"
    chmod +x "$WORK/up$i.sh"
    ip netns exec "${NS[$i]}" "$BIN" -c "$WORK/n$i.conf" >>"$WORK/n$i.log" 2>&1 </dev/null &
    PIDS[$i]=$!
}
rx() { ip netns exec "${NS[$1]}" cat "/sys/class/net/$2/statistics/rx_packets"; }

# longest gap (ms) between answers in `ping -D` output
gap_ms() { awk -F'[][]' '/bytes from/ { t = $2 + 0; if (p) { g = (t - p) * 1000; if (g > m) m = g }; p = t } END { printf "%.0f", m }'; }

round() { # scenario
    setup
    start 1; start 2
    start 0 "${MACS[1]}@198.18.1.2:41744" "${MACS[2]}@198.18.2.3:41744"
    start 3 "${MACS[1]}@198.18.3.2:41744" "${MACS[2]}@198.18.4.3:41744"
    for _ in $(seq 200); do
        ip netns exec "${NS[0]}" ping -c 1 -W 1 -q 198.19.0.4 >/dev/null 2>&1 && break
        sleep 0.1
    done
    sleep 1
    local b0 c0 relay
    b0=$(rx 1 "${TAG}0y"); c0=$(rx 2 "${TAG}1y")
    ip netns exec "${NS[0]}" ping -c 50 -i 0.01 -q 198.19.0.4 >/dev/null
    if [ $(( $(rx 1 "${TAG}0y") - b0 )) -ge 50 ]; then relay=1; else relay=2; fi
    local secs=8
    [ "$1" = cut ] && secs=$((3 * ${INTERVAL%s} + 10))
    ip netns exec "${NS[0]}" ping -D -i 0.01 -W 1 -w "$secs" 198.19.0.4 > "$WORK/ping.$1.$r" 2>&1 &
    local pp=$!
    sleep 1
    if [ "$1" = crash ]; then
        kill -KILL "${PIDS[$relay]}"
    else
        # the relay's ends of its two veths (to A and to D)
        local ka=$((relay - 1)) kd=$((relay + 1))
        ip -n "${NS[$relay]}" link set "${TAG}${ka}y" down
        ip -n "${NS[$relay]}" link set "${TAG}${kd}x" down
    fi
    wait "$pp" || true
    local g; g=$(gap_ms < "$WORK/ping.$1.$r")
    echo "$1 round $r: relay $(printf '%s' "BC" | cut -c$relay), longest gap ${g} ms" >&2
    echo "$g"
    teardown
}

declare -A RES
for r in $(seq "$ROUNDS"); do
    for s in crash cut; do RES[$s]+="$(round $s) "; done
done
median() { tr ' ' '\n' | grep -E '^[0-9]+$' | sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2) }'; }
echo
echo "| scenario (announce interval $INTERVAL) | rounds | longest gap per round, ms | median, ms |"
echo "|---|---:|---|---:|"
echo "| relay crashes (SIGKILL) | $ROUNDS | ${RES[crash]% } | $(echo "${RES[crash]}" | median) |"
echo "| relay cut off silently (veths down) | $ROUNDS | ${RES[cut]% } | $(echo "${RES[cut]}" | median) |"
