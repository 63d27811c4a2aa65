#!/usr/bin/env bash
# wanem-capacity.sh - what a WAN emulator itself can carry: one iperf3 TCP
# stream from namespace A to namespace B through the emulator in namespace M
# (offloads off on every veth), with ping every 100 ms during the stream,
# and the emulator's CPU per thread.
#
# USAGE (as root)
#   scripts/wanem-capacity.sh [-r RUNS] [-t SEC] [-C CC] EMULATOR... -- DELAY_MS LOSS_PCT RATE_MBIT [QUEUE_MS [JITTER_MS]]
#     EMULATOR  e.g. target/release/examples/wanem, or python3 /path/to/wanem.py
#     -r RUNS   repetitions (default 3), -t SEC iperf3 duration (default 8, at most 30)
#     -C CC     TCP congestion control in A and B (default reno)
# Prints one line per run: Mbit/s, retransmits, emulator CPU % (100 = one core)
# in total and for its busiest two threads (the forward and the ACK
# direction for examples/wanem), ping under load avg/max ms, load average.
# Everything stays inside the three namespaces it creates (198.18.77.0/24),
# which are deleted on exit; it kills only the processes it started, by PID.
set -uo pipefail

RUNS=3; T=8; CC=reno
while [ $# -gt 0 ]; do
    case $1 in
        -r) RUNS=$2; shift 2;;
        -t) T=$2; shift 2;;
        -C) CC=$2; shift 2;;
        *) break;;
    esac
done
EMU=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do EMU+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
WAN=("$@")
usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d;s/^# \{0,1\}//' >&2; exit 2; }
[ ${#EMU[@]} -gt 0 ] && [ ${#WAN[@]} -ge 3 ] || usage
[[ $RUNS =~ ^[1-9][0-9]?$ ]] && [[ $T =~ ^[1-9][0-9]?$ ]] && [ "$T" -le 30 ] || usage
[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }

A=wcA$$; M=wcM$$; B=wcB$$
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    PIDS=()
    for n in $A $M $B; do ip netns del $n 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ticks() { awk '{print $14+$15}' "$1" 2>/dev/null || echo 0; }

one_run() {
    local r=$1 n x
    for n in $A $M $B; do ip netns add $n || return 1; ip -n $n link set lo up; done
    ip link add va netns $A type veth peer name wA netns $M || return 1
    ip link add vb netns $B type veth peer name wB netns $M || return 1
    for x in "$A va" "$B vb" "$M wA" "$M wB"; do
        set -- $x
        ip netns exec $1 ethtool -K $2 gro off gso off tso off tx off rx off >/dev/null 2>&1
        ip -n $1 link set $2 up
    done
    ip -n $A addr add 198.18.77.1/24 dev va; ip -n $B addr add 198.18.77.2/24 dev vb
    for n in $A $B; do ip netns exec $n sysctl -qw net.ipv4.tcp_congestion_control="$CC" || return 1; done
    local log; log=$(mktemp)
    ip netns exec $M "${EMU[@]}" wA wB "${WAN[@]}" >"$log" 2>&1 &
    local ep=$!; PIDS+=($ep)
    sleep 0.5
    ip netns exec $A ping -c 3 -i 0.2 -W 2 -q 198.18.77.2 >/dev/null 2>&1
    ip netns exec $B iperf3 -s -1 -p 5301 >/dev/null 2>&1 & PIDS+=($!)
    sleep 0.5
    local tids=() t0=() tt0 s0 s1 tt1
    for x in /proc/$ep/task/*; do tids+=("$x"); t0+=("$(ticks "$x/stat")"); done
    tt0=$(ticks /proc/$ep/stat); s0=$(date +%s.%N)
    ( sleep 1; ip netns exec $A ping -c $((T * 10 - 20 > 5 ? T * 10 - 20 : 5)) -i 0.1 -W 2 -q 198.18.77.2 ) >"$log.ping" 2>&1 &
    local pp=$!
    ip netns exec $A timeout $((T + 15)) iperf3 -c 198.18.77.2 -p 5301 -t "$T" -J >"$log.json" 2>&1
    tt1=$(ticks /proc/$ep/stat); s1=$(date +%s.%N)
    local per=() i
    for i in "${!tids[@]}"; do per+=($(( $(ticks "${tids[$i]}/stat") - ${t0[$i]} ))); done
    wait $pp 2>/dev/null
    local hz; hz=$(getconf CLK_TCK)
    local busy; busy=$(printf '%s\n' "${per[@]}" | sort -rn | head -2 | awk -v hz="$hz" -v a="$s0" -v b="$s1" '{printf "%s%.0f", (NR>1 ? "/" : ""), $1/hz/(b-a)*100}')
    printf 'run %s: %s Mbit/s, retrans %s, emulator CPU %s %% (busiest threads %s %%), ping under load %s ms, load %s\n' "$r" \
        "$(jq -r '.end.sum_received.bits_per_second / 1e6 | floor' "$log.json" 2>/dev/null)" \
        "$(jq -r '.end.sum_sent.retransmits' "$log.json" 2>/dev/null)" \
        "$(awk -v a="$tt0" -v b="$tt1" -v x="$s0" -v y="$s1" -v hz="$hz" 'BEGIN{printf "%.0f", (b-a)/hz/(y-x)*100}')" \
        "$busy" \
        "$(sed -n 's/^rtt .* = [0-9.]*\/\([0-9.]*\)\/\([0-9.]*\)\/.*/\1\/\2/p' "$log.ping")" \
        "$(cut -d' ' -f1 /proc/loadavg)"
    cleanup
    grep -h "wanem: wA->wB" "$log" | sed 's/^/    /'
    rm -f "$log" "$log.json" "$log.ping"
}

echo "emulator: ${EMU[*]}; path: ${WAN[*]}; cc $CC; iperf3 -t $T, 1 stream A->B"
for r in $(seq "$RUNS"); do one_run "$r" || { echo "run $r: setup failed" >&2; exit 1; }; done
