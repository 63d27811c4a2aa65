#!/usr/bin/env bash
# bench-wan.sh - invpnd and peer VPNs over emulated WAN paths.
#
# Runs scripts/peer-bench.sh once per path condition and TCP congestion
# control (UL_WANEM / UL_CC: the project's emulator, examples/wanem.rs, in a
# namespace between the two hosts), variants interleaved round by round,
# medians reported: 1 stream, 4 streams, ping while the single stream runs.
#
# USAGE (as root, from the repository root, after
#        cargo build --release && cargo build --release --example wanem;
#        'make bench-wan' does both)
#   scripts/bench-wan.sh [options] [VARIANT ...]
#     -r N       rounds per variant (default 2)
#     -t SEC     iperf3 duration, at most 10 (default 8)
#     -c LIST    conditions, comma-separated: names or numbers from the list
#                below, or one custom "DELAY_MS LOSS_PCT RATE_MBIT [QUEUE_MS
#                [JITTER_MS]]" (default: all)
#     -C LIST    congestion controls, comma-separated (default reno,bbr; only
#                reno and bbr can be set inside namespaces here)
#     -o DIR     results directory (default bench-results)
#     -w SEC     peer-bench.sh -w: wait up to SEC s for a quiet machine before
#                each measurement (default 3)
#     -n         print the plan and the time estimate only
#     --no-install  do not pass --install to peer-bench.sh
#   VARIANTs default to: raw invpnd tinc_udp tinc_tcp ovpn_aes256gcm wggo
#
# CONDITIONS (per direction; queue 50 ms unless given)
#   1 d10_l0.5_r100        10 ms, 0.5 % loss, 100 Mbit/s
#   2 d40_l2_r20           40 ms, 2 % loss, 20 Mbit/s
#   3 d10_l0_r100_q50_j5   10 ms + 0-5 ms jitter (reordering), 100 Mbit/s
#   4 d5_l0.1_r1000        5 ms, 0.1 % loss, 1000 Mbit/s
#
# OUTPUT
#   DIR/wan-<condition>-<cc>.md (+ .csv, .meta, .wanem.log: peer-bench.sh's
#   table, raw rows and the emulator's counters) and DIR/wan.md, a summary
#   of every DIR/wan-*-*.csv present: condition, cc, variant, Mbit/s with 1
#   and 4 streams, ping under load avg / max.
set -uo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
PEER_BENCH=${PEER_BENCH:-$SCRIPT_DIR/peer-bench.sh}

CONDITIONS=("10 0.5 100" "40 2 20" "10 0 100 50 5" "5 0.1 1000")
ROUNDS=2
DURATION=8
CCS=reno,bbr
OUT_DIR=$REPO/bench-results
QUIET_WAIT=3
PLAN_ONLY=0
INSTALL=--install
SELECT=
DEFAULT_VARIANTS=(raw invpnd tinc_udp tinc_tcp ovpn_aes256gcm wggo)

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d;s/^# \{0,1\}//'; }

# "10 0.5 100" -> d10_l0.5_r100; "10 0 100 50 5" -> d10_l0_r100_q50_j5
cond_name() {
    set -- $1
    local n="d$1_l$2_r$3"
    [ $# -ge 4 ] && n+="_q$4"
    [ $# -ge 5 ] && n+="_j$5"
    echo "$n"
}

valid_cond() {
    local f n=0
    for f in $1; do
        n=$((n + 1))
        [[ $f =~ ^[0-9]+(\.[0-9]+)?$ ]] || return 1
    done
    [ $n -ge 3 ] && [ $n -le 5 ]
}

while [ $# -gt 0 ]; do
    case $1 in
        -r) ROUNDS=${2:-}; shift 2 || die "-r needs a value";;
        -t) DURATION=${2:-}; shift 2 || die "-t needs a value";;
        -c) SELECT=${2:-}; shift 2 || die "-c needs a value";;
        -C) CCS=${2:-}; shift 2 || die "-C needs a value";;
        -o) OUT_DIR=${2:-}; shift 2 || die "-o needs a value";;
        -w) QUIET_WAIT=${2:-}; shift 2 || die "-w needs a value";;
        -n) PLAN_ONLY=1; shift;;
        --no-install) INSTALL=; shift;;
        -h|--help) usage; exit 0;;
        -*) usage >&2; exit 2;;
        *) break;;
    esac
done
VARIANTS=("$@")
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("${DEFAULT_VARIANTS[@]}")
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "bad -r $ROUNDS"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] && [ "$DURATION" -le 10 ] || die "bad -t $DURATION (1-10)"
[[ $QUIET_WAIT =~ ^[0-9]+$ ]] || die "bad -w $QUIET_WAIT"

# the conditions to run
RUN=()
if [ -z "$SELECT" ]; then
    RUN=("${CONDITIONS[@]}")
elif [[ $SELECT == *" "* ]]; then
    valid_cond "$SELECT" || die "bad condition '$SELECT': DELAY_MS LOSS_PCT RATE_MBIT [QUEUE_MS [JITTER_MS]]"
    RUN=("$SELECT")
else
    IFS=, read -ra picks <<<"$SELECT"
    for p in "${picks[@]}"; do
        found=
        for i in "${!CONDITIONS[@]}"; do
            if [ "$p" = $((i + 1)) ] || [ "$p" = "$(cond_name "${CONDITIONS[$i]}")" ]; then found=${CONDITIONS[$i]}; fi
        done
        [ -n "$found" ] || die "unknown condition '$p' (see -h)"
        RUN+=("$found")
    done
fi
IFS=, read -ra CC_LIST <<<"$CCS"
for cc in "${CC_LIST[@]}"; do
    [[ $cc =~ ^[a-z0-9_]+$ ]] || die "bad congestion control '$cc'"
done

# time estimate: per variant and round, start-up and the idle ping (~6 s),
# the quiet-machine check (1 s to -w), two iperf3 runs, teardown (~2 s);
# per peer-bench.sh run, topology and keys (~15 s)
nv=${#VARIANTS[@]}
[[ " ${VARIANTS[*]} " == *" raw "* ]] || nv=$((nv + 1)) # peer-bench.sh adds raw
per_run=$((2 * DURATION + 10))
runs=$((${#RUN[@]} * ${#CC_LIST[@]}))
total=$((runs * (ROUNDS * nv * per_run + 15)))
log "plan: ${#RUN[@]} condition(s) x ${#CC_LIST[@]} congestion control(s) x $nv variant(s) x $ROUNDS round(s), iperf3 -t $DURATION"
for c in "${RUN[@]}"; do log "  condition $(cond_name "$c"): UL_WANEM=\"$c\""; done
log "estimated run time: about $((total / 60)) min $((total % 60)) s (to $(date -d "+$total sec" '+%H:%M'))"
[ $PLAN_ONLY = 1 ] && exit 0

[ "$(id -u)" = 0 ] || die "must run as root"
[ -x "$PEER_BENCH" ] || die "no $PEER_BENCH"
WANEM=${WANEM:-$REPO/target/release/examples/wanem}
[ -x "$WANEM" ] || die "no emulator at $WANEM: cargo build --release --example wanem (or make bench-wan)"
export WANEM
mkdir -p "$OUT_DIR" || die "cannot create $OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)

# summary of every wan-*-*.csv in OUT_DIR
summarize() {
    local out=$OUT_DIR/wan.md csv
    {
        echo "# invpnd and peer VPNs over emulated WAN paths"
        echo
        echo "Generated by \`scripts/bench-wan.sh\` (\`make bench-wan\`) from \`wan-<condition>-<cc>.csv\`; one table per"
        echo "condition and congestion control in \`wan-<condition>-<cc>.md\`. Conditions are per direction:"
        echo "\`dD_lL_rR[_qQ][_jJ]\` = D ms one-way delay, L % random loss, R Mbit/s link behind a Q ms drop-tail queue"
        echo "(default 50), J ms of uniform random extra delay (reorders). The emulator is \`examples/wanem.rs\`."
        echo "Medians over the successful rounds; Mbit/s is iperf3's receiver-side rate (1 stream, then 4 streams);"
        echo "ping under load: ping every 100 ms from A to B while the single stream runs (avg / max ms); idle ping"
        echo "before it. 'ok runs' counts the rounds that worked out of those attempted."
        echo
        echo "| condition | cc | variant | Mbit/s 1 stream | Mbit/s 4 streams | ping under load avg / max ms | idle ping ms | ok runs | measured |"
        echo "|---|---|---|---:|---:|---:|---:|---:|---|"
        for csv in "$OUT_DIR"/wan-*-*.csv; do
            [ -f "$csv" ] || continue
            local base cond cc when
            base=$(basename "$csv" .csv); base=${base#wan-}
            cc=${base##*-}; cond=${base%-*}
            when=$(sed -n 's/^GENERATED=//p' "${csv%.csv}.meta" 2>/dev/null | tr -d "'\\\\" | head -1)
            awk -F, -v cond="$cond" -v cc="$cc" -v when="${when:-?}" '
                function med(s,   a, n, i, j, t) {
                    n = split(s, a, " "); if (n == 0) return "NA"
                    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
                    if (n % 2) return a[(n + 1) / 2]
                    return sprintf("%g", (a[n / 2] + a[n / 2 + 1]) / 2)
                }
                function add(k, v) { if (v ~ /^[0-9.]+$/) vals[k] = vals[k] " " v }
                NR == 1 { next }
                {
                    v = $2; if (!(v in seen)) { seen[v] = 1; order[++nv] = v }
                    tried[v]++
                    if ($3 != "ok") next
                    ok[v]++
                    add(v ",1", $4); add(v ",4", $5); add(v ",p", $6)
                    # ping under load: the three columns after the quoted notes
                    n = split($0, q, "\""); rest = q[n]; m = split(rest, f, ",")
                    add(v ",la", f[2]); add(v ",lm", f[3])
                }
                END {
                    for (i = 1; i <= nv; i++) {
                        v = order[i]
                        printf "| %s | %s | %s | %s | %s | %s / %s | %s | %d/%d | %s |\n", cond, cc, v,
                            med(vals[v ",1"]), med(vals[v ",4"]), med(vals[v ",la"]), med(vals[v ",lm"]),
                            med(vals[v ",p"]), ok[v], tried[v], when
                    }
                }' "$csv"
        done
    } > "$out"
    log "summary: $out"
}

start=$(date +%s)
failed=()
first=1
for c in "${RUN[@]}"; do
    for cc in "${CC_LIST[@]}"; do
        name="wan-$(cond_name "$c")-$cc"
        log "=== $name: UL_WANEM=\"$c\" UL_CC=$cc"
        args=(-r "$ROUNDS" -t "$DURATION" -w "$QUIET_WAIT" -o "$OUT_DIR/$name.md")
        [ $first = 1 ] && [ -n "$INSTALL" ] && args+=("$INSTALL")
        # peer-bench.sh's progress lines go to the terminal and to $name.log
        if UL_WANEM="$c" UL_CC="$cc" "$PEER_BENCH" "${args[@]}" "${VARIANTS[@]}" 2>&1 >/dev/null |
            tee "$OUT_DIR/$name.log" >&2; then
            first=0
        else
            log "$name failed: see $OUT_DIR/$name.log"; tail -5 "$OUT_DIR/$name.log" >&2
            failed+=("$name")
        fi
        summarize
    done
done
el=$(($(date +%s) - start))
log "done in $((el / 60)) min $((el % 60)) s (estimated $((total / 60)) min $((total % 60)) s)"
cat "$OUT_DIR/wan.md"
[ ${#failed[@]} -eq 0 ] || { log "failed: ${failed[*]}"; exit 1; }
