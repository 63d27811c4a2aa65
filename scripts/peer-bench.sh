#!/usr/bin/env bash
# peer-bench.sh - throughput / latency anchors for VPNs between two hosts
# emulated on one machine.
#
# invpnd's copy of the project's shared peer-bench.sh, with additions
# (marked "invpnd:"): ping latency under load (during the single-stream run),
# daemon CPU seconds per gigabit, an invpnd_jumbo variant (overlay MTU
# $INVPND_JUMBO_MTU, default 65000) measured in the same run as the others,
# and a WAN emulated by the project's own emulator (examples/wanem.rs: fast
# enough for 1 Gbit/s, with jitter) instead of the shared wanem.py.
#
# TOPOLOGY
#   netns ancA  [ancA0 198.18.231.1/24] ==veth (underlay)== [ancB0 198.18.231.2/24]  netns ancB
#   VPN endpoint in each namespace, its virtual interface (TAP where the VPN
#   supports it, TUN otherwise) carries the overlay 198.19.232.1/24 (A) and
#   198.19.232.2/24 (B). iperf3 server runs in ancB, the client in ancA, aimed
#   at B's overlay address (or B's underlay address for the "raw" variant).
#   The namespaces have no default route and no link to the outside: every
#   packet stays between ancA and ancB (plus loopback).
#
# USAGE (as root)
#   ./peer-bench.sh [options] [VARIANT ...]      (default: all variants)
#     -r N        rounds per variant (default 3; median is reported)
#     -t SEC      iperf3 duration, capped at 10 (default 10)
#     -o FILE     markdown results file (default: ./peer-results.md in the current directory)
#     -l          list variants and exit
#     -k          keep the work dir (configs, keys, logs, iperf3 JSON) for inspection
#     -w SEC      before each measurement wait up to SEC s for the machine's CPU use
#                 (other jobs) to fall below 25 % (default 15; 0 = don't wait)
#     --install   apt-get install the packages the variants need, then continue
#     --report CSV   only re-render the markdown from an earlier run's CSV (+ its .meta)
#   Environment:
#     UL_WANEM="DELAY_MS LOSS_PCT RATE_MBIT [QUEUE_MS [JITTER_MS]]"   put a WAN between A
#                 and B: per direction a one-way delay, random loss, a link rate
#                 (0: unlimited) behind a drop-tail queue (default 50 ms), and a
#                 random extra delay in [0, JITTER_MS] that reorders frames.
#                 Namespace ancM bridges two veths through the emulator; offloads
#                 are off on every veth of the path (works without netem).
#     WANEM=PATH  the emulator (invpnd: default target/release/examples/wanem of
#                 this repository, built by 'cargo build --release --example
#                 wanem'; if missing, wanem.py beside this script or in
#                 /work/shared/bench, which has no jitter)
#     PING_COUNT, PING_INTERVAL   the idle ping (default 20 pings 0.05 s apart)
#     PING_ONLY=1 measure only the idle ping, no iperf3 (invpnd: quick A/B of latency)
#     UL_CC=NAME  TCP congestion control in both namespaces (a name listed in the
#                 host's net.ipv4.tcp_allowed_congestion_control, e.g. reno or bbr)
#   Variants run interleaved: round 1 of every variant, then round 2, ...
#   so that background load on the machine hits all of them alike.
#   Raw per-run numbers go to the .csv next to the .md file.
#
# HOW TO ADD A VARIANT (e.g. our own daemon)
#   1. Append its name to ALL_VARIANTS below (names: [a-z0-9_]).
#   2. Define these shell functions (NAME = the variant name):
#        v_NAME_desc           echo one line: layer, transport, cipher, MTU notes
#        v_NAME_layer          echo the table's short "layer / transport" cell,
#                              e.g. "L2 TAP / TCP+TLS"
#        v_NAME_prepare        (optional) one-time setup: keys, certs, binaries;
#                              use "$WORK/NAME" as scratch space
#        v_NAME_start NS SIDE UL_SELF UL_PEER OL_SELF OL_PEER
#                              start the endpoint inside namespace NS.
#                              SIDE is B (started first; listener/server) or A
#                              (started second; connects to UL_PEER).
#                              Start long-running processes ONLY through
#                                  spawn NS LOGFILE cmd args...
#                              (records the PID, so CPU is measured and the
#                              process is killed by PID afterwards).
#                              Before returning, the virtual interface must
#                              exist in NS with OL_SELF/$OL_PREFIX and be up
#                              (or the daemon must do that by itself shortly;
#                              the harness waits up to $REACH_TIMEOUT s for ping).
#                              Return non-zero on failure.
#        v_NAME_ready          (optional) called after the overlay answers
#                              ping; wait for e.g. PMTU discovery to settle.
#        v_NAME_stop           (optional) extra teardown; the harness already
#                              kills every spawned PID and checks that the
#                              namespaces hold no stray interfaces.
#        v_NAME_info           (optional) echo a short note determined at run
#                              time (e.g. negotiated cipher read from a log).
#   3. Only ever point the VPN at UL_PEER / OL_PEER (addresses that live in the
#      namespaces this script creates) or loopback.
#   Helpers: spawn, wait_listen NS PORT tcp|udp, wait_file PATH SECS, log.
#   Example skeleton for a TAP daemon "mydaemon":
#      v_mydaemon_desc()  { echo "L2 TAP, TLS-over-TCP, AES-128-GCM, MTU 1500"; }
#      v_mydaemon_layer() { echo "L2 TAP / TCP+TLS"; }
#      v_mydaemon_start() { local ns=$1 side=$2 ul=$3 peer=$4 ol=$5
#          local d="$WORK/mydaemon/$side"; mkdir -p "$d"
#          local args=(--listen "$ul:7000" --tap ancmdX --addr "$ol/$OL_PREFIX")
#          [ "$side" = A ] && args+=(--connect "$peer:7000")
#          spawn "$ns" "$d/log" /path/to/mydaemon "${args[@]}" || return 1
#          [ "$side" = B ] && wait_listen "$ns" 7000 tcp; }
#
# SAFETY
#   Cleans up on exit (trap): kills the processes it started (by PID), deletes
#   the two namespaces (which destroys the veth pair and any TUN/TAP left) and
#   its temp dir. It never touches the root namespace's interfaces.
set -uo pipefail
# invpnd: the namespaces have fixed names, so runs take turns (a second run
# waits for the first instead of tearing down its namespaces).
if [ -z "${PEER_BENCH_LOCKED:-}" ] && [ "${1:-}" != "-h" ] && [ "${1:-}" != "-l" ]; then
    export PEER_BENCH_LOCKED=1
    exec flock /run/lock/invpn-peer-bench.lock "$0" "$@"
fi

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---------------------------------------------------------------- settings
NS_A=ancA; NS_B=ancB
VETH_A=ancA0; VETH_B=ancB0
UL_A=${UL_A:-198.18.231.1}; UL_B=${UL_B:-198.18.231.2}; UL_PREFIX=24
OL_A=${OL_A:-198.19.232.1}; OL_B=${OL_B:-198.19.232.2}; OL_PREFIX=24
UL_MTU=${UL_MTU:-1500}
ROUNDS=3
DURATION=10
PARALLEL=4
PING_COUNT=${PING_COUNT:-20}
PING_INTERVAL=${PING_INTERVAL:-0.05}
PING_ONLY=${PING_ONLY:-0}   # invpnd: 1 = measure only the idle ping (quick A/B of latency)
IPERF_PORT=5201
REACH_TIMEOUT=30
QUIET_WAIT=15     # s to wait, before each measurement, for other jobs' CPU use to drop...
QUIET_PCT=25      # ...below this machine-wide busy % (best effort; the value seen is recorded)
OUT_MD="$PWD/peer-results.md"
KEEP_WORK=0
DO_INSTALL=0
NOTES_MARKER='<!-- hand-written notes below this line are kept when the script rewrites this file -->'

ALL_VARIANTS=(raw invpnd invpnd_base invpnd_jumbo tinc_udp tinc_tcp ovpn_aes256gcm ovpn_aes128gcm ovpn_chacha ovpn_none wggo)
PACKAGES=(iproute2 iputils-ping iperf3 jq openssl procps ethtool python3 tinc openvpn wireguard-go wireguard-tools)
NS_M=ancM            # the WAN's namespace (only with UL_WANEM)
WANEM_PID=           # the emulator's PID
WAN_DESC=            # the emulated path, for the report

# ---------------------------------------------------------------- helpers
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

PIDS=()      # every long-running process this script started
DPIDS=()     # daemons of the variant currently under test
SPAWNED_PID=

# spawn NS LOGFILE cmd...  - start cmd in the background inside namespace NS.
# `ip netns exec` execs the command, so $! is the daemon's own PID.
spawn() {
    local ns=$1 logf=$2; shift 2
    ip netns exec "$ns" "$@" >>"$logf" 2>&1 </dev/null &
    SPAWNED_PID=$!
    PIDS+=("$SPAWNED_PID"); DPIDS+=("$SPAWNED_PID")
    sleep 0.05
    if ! kill -0 "$SPAWNED_PID" 2>/dev/null; then
        log "spawn failed in $ns: $* (see $logf)"; tail -n 5 "$logf" >&2; return 1
    fi
}

# kill_pids PID... - TERM, wait up to 3 s, then KILL; reap. Only our own children.
kill_pids() {
    local p alive i
    for p in "$@"; do kill -TERM "$p" 2>/dev/null; done
    for i in $(seq 30); do
        alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && [ "$(ps -o stat= -p "$p" 2>/dev/null | cut -c1)" != Z ] && alive=1; done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for p in "$@"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    local keep=() q
    for q in "${PIDS[@]}"; do
        local drop=0; for p in "$@"; do [ "$q" = "$p" ] && drop=1; done
        [ $drop = 0 ] && keep+=("$q")
    done
    PIDS=("${keep[@]}")
}

wait_listen() { # NS PORT tcp|udp [SECS]
    local ns=$1 port=$2 proto=${3:-tcp} secs=${4:-10} flag=-ltn i
    [ "$proto" = udp ] && flag=-lun
    for i in $(seq $((secs * 10))); do
        ip netns exec "$ns" ss $flag "sport = :$port" 2>/dev/null | grep -q ":$port" && return 0
        sleep 0.1
    done
    log "nothing listening on $proto/$port in $ns after ${secs}s"; return 1
}

wait_file() { # PATH SECS
    local i; for i in $(seq $(($2 * 10))); do [ -e "$1" ] && return 0; sleep 0.1; done; return 1
}

proc_ticks() { # sum of utime+stime (clock ticks) over the given PIDs
    local t=0 p s
    for p in "$@"; do
        s=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null) || s=0
        t=$((t + ${s:-0}))
    done
    echo $t
}
sys_ticks() { awk '/^cpu /{busy=$2+$3+$4+$7+$8+$9; all=busy+$5+$6; print busy, all}' /proc/stat; }

# -------------------------------------------------------- topology / cleanup
WORK=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ ${#PIDS[@]} -gt 0 ] && kill_pids "${PIDS[@]}"
    # invpnd: the emulator by its PID (kill_pids has done it unless PIDS lost it)
    if [ -n "$WANEM_PID" ]; then
        kill -TERM "$WANEM_PID" 2>/dev/null && sleep 0.3
        kill -KILL "$WANEM_PID" 2>/dev/null; wait "$WANEM_PID" 2>/dev/null
        [ -s "$WORK/wanem.log" ] && { log "emulator:"; sed 's/^/    /' "$WORK/wanem.log" >&2
            [ -n "$ROWS_CSV" ] && cp "$WORK/wanem.log" "${ROWS_CSV%.csv}.wanem.log"; }
    fi
    local ns p
    for ns in $NS_A $NS_B $NS_M; do
        ip netns list 2>/dev/null | grep -qw "^$ns" || continue
        # anything still inside our namespaces was started by this script (e.g. hook scripts)
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -f /var/run/wireguard/ancwgA.sock /var/run/wireguard/ancwgB.sock
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ $KEEP_WORK = 1 ]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
    fi
    exit $rc
}

setup_topology() {
    ip netns add $NS_A || return 1
    ip netns add $NS_B || return 1
    if [ -n "${UL_WANEM:-}" ]; then
        # a WAN between A and B: namespace ancM bridges two veths through the emulator
        ip netns add $NS_M || return 1
        ip -n $NS_M link set lo up
        ip link add $VETH_A netns $NS_A mtu "$UL_MTU" type veth peer name wA netns $NS_M mtu "$UL_MTU" || return 1
        ip link add $VETH_B netns $NS_B mtu "$UL_MTU" type veth peer name wB netns $NS_M mtu "$UL_MTU" || return 1
        ip -n $NS_M link set wA up; ip -n $NS_M link set wB up
        local x
        for x in "$NS_A $VETH_A" "$NS_B $VETH_B" "$NS_M wA" "$NS_M wB"; do
            set -- $x; ip netns exec $1 ethtool -K $2 gro off gso off tso off tx off rx off >/dev/null 2>&1
        done
        # invpnd: the project's emulator (or the shared Python one), at a higher
        # priority than the VPNs and iperf3: it stands for the network, not a host
        # shellcheck disable=SC2086
        ip netns exec $NS_M nice -n -10 "${WANEM_CMD[@]}" wA wB $UL_WANEM >"$WORK/wanem.log" 2>&1 &
        WANEM_PID=$!
        PIDS+=("$WANEM_PID")
        sleep 0.5
        kill -0 "$WANEM_PID" 2>/dev/null || { log "the emulator failed: $(cat "$WORK/wanem.log")"; return 1; }
    else
        # create the veth pair directly inside the namespaces: nothing appears in the root ns
        ip link add $VETH_A netns $NS_A mtu "$UL_MTU" type veth peer name $VETH_B netns $NS_B mtu "$UL_MTU" || return 1
    fi
    local ns
    for ns in $NS_A $NS_B; do
        ip -n $ns link set lo up
        ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    done
    ip -n $NS_A addr add $UL_A/$UL_PREFIX dev $VETH_A
    ip -n $NS_B addr add $UL_B/$UL_PREFIX dev $VETH_B
    ip -n $NS_A link set $VETH_A up
    ip -n $NS_B link set $VETH_B up
    if [ -n "${UL_CC:-}" ]; then
        # congestion control of every TCP in both namespaces (iperf3's and the VPNs')
        for ns in $NS_A $NS_B; do ip netns exec $ns sysctl -qw net.ipv4.tcp_congestion_control="$UL_CC" || return 1; done
    fi
    # invpnd: a few tries, the emulated path may lose the first one
    local i
    for i in 1 2 3 4 5; do
        ip netns exec $NS_A ping -c 1 -W 2 -q $UL_B >/dev/null && return 0
    done
    log "underlay ping failed"; return 1
}

# any interface other than lo / the veth left in a namespace after a variant stops
stray_ifaces() {
    local ns
    for ns in $NS_A $NS_B; do
        ip -n $ns -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -vxE "lo|$VETH_A|$VETH_B" | sed "s/^/$ns:/"
    done
}

# overlay interface facts: "name kind mtu" for the interface holding ADDR in NS
iface_facts() { # NS ADDR
    local name mtu kind
    name=$(ip -n "$1" -o addr show to "$2/32" | awk '{print $2; exit}')
    [ -z "$name" ] && { echo "? ? ?"; return; }
    mtu=$(ip -n "$1" -o link show dev "$name" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
    kind=$(ip -n "$1" -d -o link show dev "$name" | grep -oE 'tun type (tun|tap)|veth|wireguard' | head -1 | sed 's/tun type //')
    echo "$name ${kind:-?} ${mtu:-?}"
}

# ================================================================ VARIANTS
# ---- raw: iperf3 straight over the veth (physical ceiling)
v_raw_desc()  { echo "no VPN: iperf3 over the veth itself (ceiling; veth keeps TSO/GSO offloads)"; }
v_raw_start() { return 0; }

# ---- tinc 1.0, Mode = switch (L2, TAP)
v_tinc_prepare() {
    [ -d "$WORK/tinc/keys" ] && return 0
    local s
    for s in A B; do
        local k="$WORK/tinc/keys/$s"; mkdir -p "$k/hosts"
        printf 'Name = anc%s\n' "$s" > "$k/tinc.conf"
        tincd -c "$k" -K2048 </dev/null >"$k/keygen.log" 2>&1 || { log "tinc keygen failed"; return 1; }
    done
}
v_tinc_udp_prepare() { v_tinc_prepare; }
v_tinc_tcp_prepare() { v_tinc_prepare; }
# tinc_start VARIANT TCPONLY NS SIDE UL_SELF UL_PEER OL_SELF
tinc_start() {
    local var=$1 tcponly=$2 ns=$3 side=$4 ul=$5 peer=$6 ol=$7
    local me="anc$side" other; [ "$side" = A ] && other=ancB || other=ancA
    local d="$WORK/$var/$side"; rm -rf "$d"; mkdir -p "$d/hosts"
    {
        echo "Name = $me"
        echo "Mode = switch"
        echo "Interface = anct$side"
        echo "AddressFamily = ipv4"
        echo "BindToAddress = $ul"
        echo "Port = 655"
        echo "PrivateKeyFile = $WORK/tinc/keys/$side/rsa_key.priv"
        [ "$side" = A ] && echo "ConnectTo = $other"
    } > "$d/tinc.conf"
    local s addr
    for s in A B; do
        [ $s = A ] && addr=$UL_A || addr=$UL_B
        {
            echo "Address = $addr"
            echo "Port = 655"
            [ "$tcponly" = 1 ] && echo "TCPOnly = yes"
            # defaults spelled out: Cipher aes-256-cbc, Digest sha256, MACLength 4, Compression 0
            echo "Cipher = aes-256-cbc"
            echo "Digest = sha256"
            echo "MACLength = 4"
            echo "Compression = 0"
            cat "$WORK/tinc/keys/$s/hosts/anc$s"
        } > "$d/hosts/anc$s"
    done
    printf '#!/bin/sh\nip link set "$INTERFACE" up\nip addr add %s/%s dev "$INTERFACE"\n' "$ol" "$OL_PREFIX" > "$d/tinc-up"
    chmod +x "$d/tinc-up"
    spawn "$ns" "$d/stderr.log" tincd -c "$d" -D -d1 --logfile="$d/tinc.log" --pidfile="$d/tinc.pid" || return 1
    [ "$side" = B ] && { wait_listen "$ns" 655 tcp || return 1; }
    return 0
}
v_tinc_udp_desc()  { echo "tinc 1.0 Mode=switch (L2 TAP), data over UDP, aes-256-cbc + sha256 MAC(4 B), compression 0, PMTU discovery + MSS clamping (defaults)"; }
v_tinc_udp_start() { tinc_start tinc_udp 0 "$@"; }
v_tinc_tcp_desc()  { echo "tinc 1.0 Mode=switch (L2 TAP), TCPOnly=yes: frames inside the meta TCP connection (meta-connection AES-CFB stream cipher, no per-packet MAC)"; }
v_tinc_tcp_start() { tinc_start tinc_tcp 1 "$@"; }
# wait until A's PMTU towards B is fixed (min == max); tinc dumps its node table on SIGUSR2
v_tinc_udp_ready() {
    local pid logf="$WORK/tinc_udp/A/tinc.log" i line
    pid=$(cat "$WORK/tinc_udp/A/tinc.pid" 2>/dev/null) || return 0
    for i in $(seq 40); do
        kill -USR2 "$pid" 2>/dev/null
        sleep 1
        line=$(grep -E ' ancB at .*pmtu' "$logf" | tail -1)
        if [[ $line =~ pmtu\ ([0-9]+)\ \(min\ ([0-9]+)\ max\ ([0-9]+)\) ]] && [ "${BASH_REMATCH[2]}" = "${BASH_REMATCH[3]}" ] && [ "${BASH_REMATCH[2]}" != 0 ]; then
            TINC_PMTU=${BASH_REMATCH[1]}; log "tinc PMTU fixed at $TINC_PMTU after ${i}s"; return 0
        fi
    done
    log "tinc PMTU not settled after 40 s (last: $line)"; TINC_PMTU="unsettled"; return 0
}
v_tinc_udp_info() { echo "PMTU ${TINC_PMTU:-?}"; }

# ---- OpenVPN 2.6, dev tap, TCP, TLS (CA + certs made with openssl), p2p TLS mode
v_ovpn_prepare() {
    local p="$WORK/ovpn/pki"
    [ -f "$p/ca.crt" ] && return 0
    mkdir -p "$p"
    (
        cd "$p" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj "/CN=anc-bench-ca" -keyout ca.key -out ca.crt \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" || exit 1
        local s eku
        for s in A B; do
            [ $s = B ] && eku=serverAuth || eku=clientAuth
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=anc$s" \
                -keyout $s.key -out $s.csr || exit 1
            printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=%s\n' $eku > $s.ext
            openssl x509 -req -in $s.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile $s.ext -out $s.crt || exit 1
        done
    ) >"$WORK/ovpn/pki.log" 2>&1 || { log "openssl PKI generation failed, see $WORK/ovpn/pki.log"; return 1; }
}
# ovpn_start VARIANT CIPHER NS SIDE UL_SELF UL_PEER OL_SELF
ovpn_start() {
    local var=$1 cipher=$2 ns=$3 side=$4 ul=$5 peer=$6 ol=$7
    local d="$WORK/$var/$side" p="$WORK/ovpn/pki"; rm -rf "$d"; mkdir -p "$d"
    {
        echo "dev ancov$side"
        echo "dev-type tap"
        echo "disable-dco"               # DCO has no TAP support anyway; stay userspace explicitly
        echo "ca $p/ca.crt"
        echo "cert $p/$side.crt"
        echo "key $p/$side.key"
        echo "data-ciphers $cipher"
        echo "data-ciphers-fallback $cipher"
        # cipher none: also no HMAC, and no SWEET32 renegotiation every 64 MB (reneg-bytes 0)
        [ "$cipher" = none ] && { echo "auth none"; echo "reneg-bytes 0"; }
        echo "allow-compression no"     # no compression, no compression framing
        echo "ifconfig $ol 255.255.255.0"
        echo "verb 3"
        if [ "$side" = B ]; then
            echo "tls-server"; echo "dh none"; echo "remote-cert-tls client"
            echo "proto tcp-server"; echo "local $ul"; echo "lport 1194"
        else
            echo "tls-client"; echo "remote-cert-tls server"
            echo "proto tcp-client"; echo "remote $peer 1194"; echo "nobind"
            echo "connect-retry 1"
        fi
    } > "$d/ovpn.conf"
    spawn "$ns" "$d/ovpn.log" openvpn --config "$d/ovpn.conf" || return 1
    [ "$side" = B ] && { wait_listen "$ns" 1194 tcp || return 1; }
    return 0
}
ovpn_info() { # VARIANT - negotiated data channel cipher, from A's log
    local c
    c=$(grep -hoE "(Data Channel: [Cc]ipher '[^']*'|Outgoing Data Channel: Cipher '[^']*'|Data Channel: using negotiated cipher '[^']*')" "$WORK/$1/A/ovpn.log" 2>/dev/null | tail -1 | grep -oE "'[^']*'")
    echo "negotiated ${c:-?}"
}
v_ovpn_aes256gcm_prepare() { v_ovpn_prepare; }
v_ovpn_aes256gcm_desc()  { echo "OpenVPN 2.6 dev tap, proto tcp, TLS (ECDSA P-256 certs), data cipher AES-256-GCM (the default), no compression, userspace (no DCO)"; }
v_ovpn_aes256gcm_start() { ovpn_start ovpn_aes256gcm AES-256-GCM "$@"; }
v_ovpn_aes256gcm_info()  { ovpn_info ovpn_aes256gcm; }
v_ovpn_aes128gcm_prepare() { v_ovpn_prepare; }
v_ovpn_aes128gcm_desc()  { echo "as above, data cipher AES-128-GCM"; }
v_ovpn_aes128gcm_start() { ovpn_start ovpn_aes128gcm AES-128-GCM "$@"; }
v_ovpn_aes128gcm_info()  { ovpn_info ovpn_aes128gcm; }
v_ovpn_chacha_prepare() { v_ovpn_prepare; }
v_ovpn_chacha_desc()  { echo "as above, data cipher CHACHA20-POLY1305"; }
v_ovpn_chacha_start() { ovpn_start ovpn_chacha CHACHA20-POLY1305 "$@"; }
v_ovpn_chacha_info()  { ovpn_info ovpn_chacha; }
v_ovpn_none_prepare() { v_ovpn_prepare; }
v_ovpn_none_desc()  { echo "as above, data cipher none + auth none (NO data encryption: measures OpenVPN's I/O path only; reference, not a fair peer)"; }
v_ovpn_none_start() { ovpn_start ovpn_none none "$@"; }
v_ovpn_none_info()  { ovpn_info ovpn_none; }

# ---- wireguard-go (userspace WireGuard, L3 TUN only)
v_wggo_prepare() {
    local d="$WORK/wggo/keys" s
    [ -f "$d/A.pub" ] && return 0
    mkdir -p "$d" && chmod 700 "$d"
    for s in A B; do wg genkey > "$d/$s.key" && chmod 600 "$d/$s.key" && wg pubkey < "$d/$s.key" > "$d/$s.pub" || return 1; done
}
v_wggo_desc() { echo "wireguard-go (L3 TUN - WireGuard has no L2 mode), UDP, ChaCha20-Poly1305, MTU 1420 (its default)"; }
v_wggo_start() {
    local ns=$1 side=$2 ul=$3 peer=$4 ol=$5 olpeer=$6
    local other; [ "$side" = A ] && other=B || other=A
    local d="$WORK/wggo/$side" k="$WORK/wggo/keys" ifc="ancwg$side"; rm -rf "$d"; mkdir -p "$d"
    spawn "$ns" "$d/wg.log" env WG_PROCESS_FOREGROUND=1 wireguard-go -f "$ifc" || return 1
    wait_file "/var/run/wireguard/$ifc.sock" 10 || { log "wireguard-go UAPI socket missing"; return 1; }
    ip netns exec "$ns" wg set "$ifc" listen-port 51820 private-key "$k/$side.key" \
        peer "$(cat "$k/$other.pub")" endpoint "$peer:51820" allowed-ips "$olpeer/32" || return 1
    ip -n "$ns" addr add "$ol/$OL_PREFIX" dev "$ifc" || return 1
    ip -n "$ns" link set "$ifc" up || return 1
}

# ---- invpnd (this project): L2 TAP, TLS over TCP. Binary: $INVPND, default
# ./target/release/invpnd (run from the project root after cargo build --release).
# Extra [network]/[interface] lines for both ends: $INVPND_EXTRA (e.g. "mtu=9000").
INVPND=${INVPND:-$PWD/target/release/invpnd}
INVPND_MAC_A=02:50:56:00:a0:01; INVPND_MAC_B=02:50:56:00:a0:02
v_invpnd_desc() { echo "invpnd (L2 TAP, TLS over TCP, rustls), ${INVPND_EXTRA:-defaults}"; }
v_invpnd_layer() { echo "L2 TAP / TCP+TLS"; }
v_invpnd_prepare() {
    [ -x "$INVPND" ] || { log "no invpnd binary at $INVPND (cargo build --release, or set INVPND)"; return 1; }
    local p="$WORK/invpnd/pki" s mac
    [ -f "$p/ca.crt" ] && return 0
    mkdir -p "$p"
    (
        cd "$p" || exit 1
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj "/CN=invpnd-bench-ca" -keyout ca.key -out ca.crt \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" || exit 1
        printf 'basicConstraints=critical,CA:FALSE\nsubjectKeyIdentifier=hash\n' > node.ext
        for s in A B; do
            [ $s = A ] && mac=$INVPND_MAC_A || mac=$INVPND_MAC_B
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$mac" \
                -keyout $s.key -out $s.csr || exit 1
            openssl x509 -req -in $s.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile node.ext -out $s.crt || exit 1
        done
    ) >"$WORK/invpnd/pki.log" 2>&1 || { log "openssl failed, see $WORK/invpnd/pki.log"; return 1; }
}
v_invpnd_start() { invpnd_start invpnd "${INVPND_EXTRA:-}" "$@"; }
# invpnd: the same daemon with a large overlay MTU (frames up to 65000 bytes
# fit the 16-bit message length; both ends agree).
INVPND_JUMBO_MTU=${INVPND_JUMBO_MTU:-65000}
v_invpnd_jumbo_desc() { echo "invpnd with [interface] mtu=$INVPND_JUMBO_MTU ${INVPND_EXTRA:-}"; }
v_invpnd_jumbo_layer() { echo "L2 TAP / TCP+TLS"; }
v_invpnd_jumbo_prepare() { v_invpnd_prepare; }
v_invpnd_jumbo_start() { invpnd_start invpnd_jumbo "mtu=$INVPND_JUMBO_MTU${INVPND_EXTRA:+
$INVPND_EXTRA}" "$@"; }
# invpnd: another build of the daemon ($INVPND_BASE, e.g. the commit before a
# change) measured side by side with the current one, with its own extra
# configuration ($INVPND_BASE_EXTRA, default $INVPND_EXTRA)
v_invpnd_base_desc() { echo "invpnd baseline build $INVPND_BASE ${INVPND_BASE_EXTRA:-${INVPND_EXTRA:-}}"; }
v_invpnd_base_layer() { echo "L2 TAP / TCP+TLS"; }
v_invpnd_base_prepare() {
    [ -x "${INVPND_BASE:-}" ] || { log "invpnd_base needs INVPND_BASE=/path/to/another/invpnd"; return 1; }
    v_invpnd_prepare
}
v_invpnd_base_start() {
    local save=$INVPND rc; INVPND=$INVPND_BASE
    invpnd_start invpnd_base "${INVPND_BASE_EXTRA-${INVPND_EXTRA:-}}" "$@"; rc=$?
    INVPND=$save; return $rc
}
invpnd_start() { # VARIANT EXTRA NS SIDE UL_SELF UL_PEER OL_SELF
    local var=$1 extra=$2; shift 2
    local ns=$1 side=$2 ul=$3 peer=$4 ol=$5
    local d="$WORK/$var/$side" p="$WORK/invpnd/pki" ifc="ancin$side" i
    rm -rf "$d"; mkdir -p "$d"
    {
        echo "[ssl]"; echo "key=$p/$side.key"; echo "cert=$p/$side.crt"; echo "ca=$p/ca.crt"
        echo "[network]"; echo "port=41744"; echo "bind=$ul"; echo "cache=$d/cache"
        [ "$side" = A ] && echo "init=$INVPND_MAC_B@$peer:41744"
        echo "[interface]"; echo "name=$ifc"
        [ -n "$extra" ] && printf '%s\n' "$extra"
        echo "[control]"; echo "socket=$d/ctl.sock"
    } > "$d/invpn.conf"
    spawn "$ns" "$d/invpnd.log" env RUST_LOG=${RUST_LOG:-warn} "$INVPND" -c "$d/invpn.conf" || return 1
    for i in $(seq 100); do ip -n "$ns" link show "$ifc" >/dev/null 2>&1 && break; sleep 0.1; done
    ip -n "$ns" addr add "$ol/$OL_PREFIX" dev "$ifc" || return 1
    ip -n "$ns" link set "$ifc" up || return 1
    [ "$side" = B ] && { wait_listen "$ns" 41744 tcp || return 1; }
    return 0
}

# ================================================================ harness
ROWS_CSV=
measure_variant() { # VARIANT ROUND
    local v=$1 r=$2 dir="$WORK/runs/$1.r$2" target=$OL_B
    mkdir -p "$dir"
    DPIDS=()
    [ "$v" = raw ] && target=$UL_B
    local status=ok note="" p1=NA p4=NA rtt=NA dcpu=NA scpu=NA bcpu=NA retr=NA mss=NA facts="- - -" load
    local lrtt=NA lmax=NA cpg=NA   # invpnd: ping under load (avg, max), CPU s per Gbit
    log "== round $r: $v"
    if ! "v_${v}_start" $NS_B B $UL_B $UL_A $OL_B $OL_A; then status="start B failed"
    elif ! "v_${v}_start" $NS_A A $UL_A $UL_B $OL_A $OL_B; then status="start A failed"
    fi
    local i reached=0
    if [ "$status" = ok ]; then
        for i in $(seq $((REACH_TIMEOUT * 4))); do
            ip netns exec $NS_A ping -c 1 -W 1 -q "$target" >/dev/null 2>&1 && { reached=1; break; }
            sleep 0.25
        done
        [ $reached = 1 ] || status="overlay unreachable after ${REACH_TIMEOUT}s"
    fi
    if [ "$status" = ok ] && declare -F "v_${v}_ready" >/dev/null; then "v_${v}_ready"; fi
    local daemons=("${DPIDS[@]}")
    local srv=
    if [ "$status" = ok ]; then
        [ "$v" != raw ] && facts=$(iface_facts $NS_A $OL_A)
        spawn $NS_B "$dir/iperf3-server.log" iperf3 -s -p $IPERF_PORT && srv=$SPAWNED_PID
        wait_listen $NS_B $IPERF_PORT tcp 5 || status="iperf3 server did not start"
    fi
    if [ "$status" = ok ]; then
        # background CPU: machine-wide busy share over 1 s while our tunnel idles (other jobs on
        # the box). Wait up to QUIET_WAIT s for it to drop below QUIET_PCT; record the last window.
        local b0 b0a b1 b1a w
        for w in $(seq $((QUIET_WAIT + 1))); do
            read -r b0 b0a < <(sys_ticks); sleep 1; read -r b1 b1a < <(sys_ticks)
            bcpu=$(awk -v a="$b0" -v b="$b1" -v aa="$b0a" -v bb="$b1a" 'BEGIN{ if (bb>aa) printf "%.0f", (b-a)/(bb-aa)*100; else print "NA"}')
            [ "$bcpu" != NA ] && [ "$bcpu" -lt "$QUIET_PCT" ] && break
        done
        # idle RTT
        ip netns exec $NS_A ping -c $PING_COUNT -i $PING_INTERVAL -W 1 -q "$target" > "$dir/ping.txt" 2>&1
        rtt=$(sed -n 's/^rtt .* = [0-9.]*\/\([0-9.]*\)\/.*/\1/p' "$dir/ping.txt"); rtt=${rtt:-NA}
        load=$(cut -d' ' -f1 /proc/loadavg)
    fi
    if [ "$status" = ok ] && [ "$PING_ONLY" != 1 ]; then
        # single stream, with CPU accounting
        local d0 s0 s0a d1 s1 s1a t0 t1
        d0=$(proc_ticks "${daemons[@]}"); read -r s0 s0a < <(sys_ticks); t0=$(date +%s.%N)
        # invpnd: ping every 100 ms while the stream runs (from 1 s in to 1 s before the end)
        ( sleep 1; ip netns exec $NS_A ping -c $((DURATION * 10 - 20 > 5 ? DURATION * 10 - 20 : 5)) -i 0.1 -W 2 -q "$target" ) \
            > "$dir/ping-load.txt" 2>&1 &
        local lping=$!
        ip netns exec $NS_A timeout $((DURATION + 20)) iperf3 -c "$target" -p $IPERF_PORT -t "$DURATION" -P 1 -J \
            --connect-timeout 5000 > "$dir/p1.json" 2>"$dir/p1.err"
        d1=$(proc_ticks "${daemons[@]}"); read -r s1 s1a < <(sys_ticks); t1=$(date +%s.%N)
        wait "$lping" 2>/dev/null
        lrtt=$(sed -n 's/^rtt .* = [0-9.]*\/\([0-9.]*\)\/.*/\1/p' "$dir/ping-load.txt"); lrtt=${lrtt:-NA}
        lmax=$(sed -n 's/^rtt .* = [0-9.]*\/[0-9.]*\/\([0-9.]*\)\/.*/\1/p' "$dir/ping-load.txt"); lmax=${lmax:-NA}
        p1=$(jq -r '.end.sum_received.bits_per_second // empty | . / 1e6 | floor' "$dir/p1.json" 2>/dev/null); p1=${p1:-NA}
        retr=$(jq -r '.end.sum_sent.retransmits // empty' "$dir/p1.json" 2>/dev/null); retr=${retr:-NA}
        mss=$(jq -r '.start.tcp_mss_default // empty' "$dir/p1.json" 2>/dev/null); mss=${mss:-NA}
        local hz; hz=$(getconf CLK_TCK)
        if [ "$v" != raw ]; then
            dcpu=$(awk -v a="$d0" -v b="$d1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN{printf "%.0f", (b-a)/hz/(t1-t0)*100}')
        fi
        scpu=$(awk -v a="$s0" -v b="$s1" -v aa="$s0a" -v bb="$s1a" 'BEGIN{ if (bb>aa) printf "%.0f", (b-a)/(bb-aa)*100; else print "NA"}')
        # invpnd: daemon CPU seconds per gigabit carried = (cpu%/100) / (Gbit/s)
        if [ "$dcpu" != NA ] && [ "$p1" != NA ] && [ "$p1" -gt 0 ]; then
            cpg=$(awk -v c="$dcpu" -v p="$p1" 'BEGIN{printf "%.2f", c / 100 / (p / 1000)}')
        fi
        # 4 parallel streams
        ip netns exec $NS_A timeout $((DURATION + 20)) iperf3 -c "$target" -p $IPERF_PORT -t "$DURATION" -P $PARALLEL -J \
            --connect-timeout 5000 > "$dir/p4.json" 2>"$dir/p4.err"
        p4=$(jq -r '.end.sum_received.bits_per_second // empty | . / 1e6 | floor' "$dir/p4.json" 2>/dev/null); p4=${p4:-NA}
        [ "$p1" = NA ] && note+="P1 failed: $(jq -r '.error // empty' "$dir/p1.json" 2>/dev/null | head -c 80) "
        [ "$p4" = NA ] && note+="P4 failed: $(jq -r '.error // empty' "$dir/p4.json" 2>/dev/null | head -c 80) "
        if declare -F "v_${v}_info" >/dev/null; then note+="$("v_${v}_info")"; fi
    elif [ "$status" != ok ]; then
        load=$(cut -d' ' -f1 /proc/loadavg)
        log "$v round $r: $status"
    fi
    # teardown
    if declare -F "v_${v}_stop" >/dev/null; then "v_${v}_stop"; fi
    [ ${#DPIDS[@]} -gt 0 ] && kill_pids "${DPIDS[@]}"
    DPIDS=()
    local stray i2
    for i2 in $(seq 20); do stray=$(stray_ifaces); [ -z "$stray" ] && break; sleep 0.1; done
    if [ -n "$stray" ]; then
        log "stray interfaces after $v: $stray - deleting"
        local x; for x in $stray; do ip -n "${x%%:*}" link del "${x#*:}" 2>/dev/null; done
    fi
    read -r fname fkind fmtu <<<"$facts"
    note=${note//,/;}; note=${note//\"/\'}
    log "$v r$r: P1=${p1} P4=${p4} Mbit/s rtt=${rtt} ms loaded-rtt=${lrtt}/${lmax} ms daemonCPU=${dcpu}% cpu-s/Gbit=${cpg} sysCPU=${scpu}% bgCPU=${bcpu}% load=${load} mss=${mss} ${note}"
    printf '%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,"%s",%s,%s,%s\n' "$r" "$v" "$status" "$p1" "$p4" "$rtt" "$dcpu" "$scpu" \
        "$retr" "$load" "$fname" "$fkind" "$fmtu" "$mss" "$bcpu" "$note" "$lrtt" "$lmax" "$cpg" >> "$ROWS_CSV"
}

median() { # numbers on stdin (NA ignored) -> median or NA
    grep -E '^[0-9.]+$' | sort -g | awk '{a[NR]=$1} END{ if(NR==0){print "NA"; exit}
        if(NR%2) print a[(NR+1)/2]; else printf "%g\n", (a[NR/2]+a[NR/2+1])/2 }'
}
MAXBG=   # when set: only rows whose background CPU % is below it
col() { # VARIANT COLUMN-NUMBER -> values of that column for the variant's successful rows
    awk -F, -v v="$1" -v c="$2" -v m="$MAXBG" 'NR>1 && $2==v && $3=="ok" && (m=="" || ($15!="NA" && $15+0 < m+0)) {print $c}' "$ROWS_CSV"
}
minmax() { grep -E '^[0-9.]+$' | sort -g | awk 'NR==1{mn=$1} {mx=$1} END{ if(NR) printf "%s-%s", mn, mx; else printf "NA"}'; }

variant_layer() {
    case $1 in
        raw) echo "veth";; tinc_udp) echo "L2 TAP / UDP";; tinc_tcp) echo "L2 TAP / TCP";;
        ovpn_*) echo "L2 TAP / TCP+TLS";; wggo) echo "L3 TUN / UDP";;
        *) declare -F "v_${1}_layer" >/dev/null && "v_${1}_layer" || echo "-";;
    esac
}

print_table() { # uses MAXBG
    local rawp1 rawp4 v
    rawp1=$(col raw 4 | median); rawp4=$(col raw 5 | median)
    echo "| variant | layer / transport | Mbit/s 1 stream | Mbit/s -P$PARALLEL | ratio to raw (1 / -P$PARALLEL) | ping avg ms | ping under load avg / max ms | VPN daemons CPU % (1 stream) | daemon CPU s per Gbit | system CPU % (1 stream) | overlay iface kind, MTU / TCP MSS | 1-stream min-max | background CPU % | runs used | notes |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|"
    for v in "${VARIANTS[@]}"; do
        local p1 p4 rtt dc sc bc mss r1 r4 n ok ifk ifm note fails
        p1=$(col "$v" 4 | median); p4=$(col "$v" 5 | median); rtt=$(col "$v" 6 | median)
        dc=$(col "$v" 7 | median); sc=$(col "$v" 8 | median)
        local la lm cg; la=$(col "$v" 17 | median); lm=$(col "$v" 18 | median); cg=$(col "$v" 19 | median)
        bc=$(col "$v" 15 | median); mss=$(col "$v" 14 | median)
        ok=$(col "$v" 3 | wc -l)
        n=$(awk -F, -v v="$v" 'NR>1 && $2==v' "$ROWS_CSV" | wc -l)
        r1=NA; r4=NA
        [[ $p1 != NA && $rawp1 != NA ]] && r1=$(awk -v a="$p1" -v b="$rawp1" 'BEGIN{printf "%.3f", a/b}')
        [[ $p4 != NA && $rawp4 != NA ]] && r4=$(awk -v a="$p4" -v b="$rawp4" 'BEGIN{printf "%.3f", a/b}')
        ifk=$(awk -F, -v v="$v" 'NR>1 && $2==v && $3=="ok"{print $12; exit}' "$ROWS_CSV")
        ifm=$(awk -F, -v v="$v" 'NR>1 && $2==v && $3=="ok"{print $13; exit}' "$ROWS_CSV")
        note=$(awk -F, -v v="$v" 'NR>1 && $2==v {sub(/^[^"]*"/,""); sub(/"[^"]*$/,""); print}' "$ROWS_CSV" | grep -v '^ *$' | sort | uniq -c | sed 's/^ *\([0-9]*\) /\1x /' | paste -sd';' -)
        fails=$(awk -F, -v v="$v" 'NR>1 && $2==v && $3!="ok"{print $3}' "$ROWS_CSV" | sort | uniq -c | sed 's/^ *//' | paste -sd';' -)
        [ -n "$fails" ] && note="FAILED: $fails; $note"
        [ "$v" = raw ] && { ifk="veth"; ifm=$UL_MTU; }
        echo "| $v | $(variant_layer "$v") | $p1 | $p4 | $r1 / $r4 | $rtt | $la / $lm | $dc | $cg | $sc | ${ifk:-?} $ifm / $mss | $(col "$v" 4 | minmax) | $bc | $ok/$n | ${note:-} |"
    done
}

write_report() {
    local out=$1 kept="" v
    if [ -f "$out" ] && grep -qF "$NOTES_MARKER" "$out"; then
        kept=$(awk -v m="$NOTES_MARKER" 'f{print} $0==m{f=1}' "$out")
    fi
    {
        echo "# Peer VPN anchors: two namespaces on one machine"
        echo
        echo "Generated by \`peer-bench.sh\` (measured $GENERATED)."
        echo "Rounds per variant: $ROUNDS (variants interleaved round by round), iperf3 \`-t $DURATION\`, single stream and \`-P $PARALLEL\`;"
        echo "ping \`-c $PING_COUNT -i $PING_INTERVAL\` on the idle tunnel. Numbers are medians; Mbit/s is iperf3's receiver-side rate."
        echo
        echo "Machine: $MACHINE."
        echo "Load: at start \`$LOAD_START\`; at end \`$LOAD_END\`. Other jobs may share the cores: compare ratios, not absolute numbers."
        echo "Versions: $VERSIONS"
        [ -n "$WAN_DESC" ] && echo "Path between A and B (invpnd: emulated WAN): $WAN_DESC"
        echo
        echo "## All runs"
        echo
        MAXBG= print_table
        echo
        echo "## Quiet runs only (background CPU < $QUIET_PCT % just before the run)"
        echo
        echo "Same medians restricted to runs that started while other jobs left the machine mostly idle; 'runs used' says how many qualified."
        echo
        MAXBG=$QUIET_PCT print_table
        echo
        echo "Variant details:"
        echo
        for v in "${VARIANTS[@]}"; do
            if declare -F "v_${v}_desc" >/dev/null; then echo "- \`$v\`: $("v_${v}_desc")"; else echo "- \`$v\`"; fi
        done
        echo
        echo "Per-run data: \`$(basename "$ROWS_CSV")\` (round, variant, status, Mbit/s 1 stream, Mbit/s -P$PARALLEL, ping avg ms,"
        echo "daemon CPU %, system CPU %, TCP retransmits (1 stream), load1, overlay iface, kind, MTU, TCP MSS, background CPU %, notes)."
        echo "CPU %: VPN daemon CPU = utime+stime of both endpoints' processes over the 1-stream run, 100 = one core;"
        echo "system CPU = share of all cores busy machine-wide during that run (includes iperf3 and any other job);"
        echo "background CPU = machine-wide busy share in a 1 s window just before the run, tunnel idle (= other jobs on the machine)."
        echo "Re-render this file from the .csv/.meta without measuring: \`peer-bench.sh --report $(basename "$ROWS_CSV")\`."
        echo
        echo "$NOTES_MARKER"
        [ -n "$kept" ] && printf '%s\n' "$kept"
    } > "$out"
}

save_meta() { # run facts needed to re-render the report later
    local f="${ROWS_CSV%.csv}.meta" k
    : > "$f"
    for k in GENERATED MACHINE LOAD_START LOAD_END VERSIONS ROUNDS DURATION PARALLEL PING_COUNT PING_INTERVAL UL_MTU QUIET_PCT WAN_DESC; do
        printf '%s=%q\n' "$k" "${!k}" >> "$f"
    done
}

# invpnd: checks UL_WANEM and picks the emulator (WANEM_CMD, WAN_DESC)
wan_setup() {
    local f n=0
    for f in $UL_WANEM; do
        n=$((n + 1))
        [[ $f =~ ^[0-9]+(\.[0-9]+)?$ ]] || { log "UL_WANEM: '$f' is not a number"; return 1; }
    done
    [ $n -ge 3 ] && [ $n -le 5 ] || { log "UL_WANEM needs 3 to 5 numbers: DELAY_MS LOSS_PCT RATE_MBIT [QUEUE_MS [JITTER_MS]]"; return 1; }
    command -v ethtool >/dev/null || { log "missing ethtool (try --install)"; return 1; }
    local bin=${WANEM:-$SCRIPT_DIR/../target/release/examples/wanem} py
    if [ -x "$bin" ]; then
        WANEM_CMD=("$(readlink -f "$bin")")
    else
        [ -n "${WANEM:-}" ] && { log "WANEM=$WANEM is not an executable"; return 1; }
        for py in "$SCRIPT_DIR/wanem.py" /work/shared/bench/wanem.py; do [ -f "$py" ] && break; done
        [ -f "$py" ] || { log "no emulator: build it with 'cargo build --release --example wanem'"; return 1; }
        [ $n -le 4 ] || { log "$py has no jitter: build the project's emulator (cargo build --release --example wanem)"; return 1; }
        command -v python3 >/dev/null || { log "missing python3 (try --install)"; return 1; }
        log "$bin missing: falling back to $py (slow: ~100 Mbit/s at most)"
        WANEM_CMD=(python3 "$py")
    fi
    set -- $UL_WANEM
    WAN_DESC="one-way delay $1 ms + jitter 0-${5:-0} ms, loss $2 %, rate $3 Mbit/s, queue ${4:-50} ms, each direction ($(basename "${WANEM_CMD[-1]}"))"
    [ -n "${UL_CC:-}" ] && WAN_DESC+="; TCP congestion control $UL_CC"
    log "WAN: $WAN_DESC"
}

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d;s/^# \{0,1\}//'; }

main() {
    local args=()
    while [ $# -gt 0 ]; do
        case $1 in
            -r) ROUNDS=$2; shift 2;;
            -t) DURATION=$2; shift 2;;
            -o) OUT_MD=$2; shift 2;;
            -k) KEEP_WORK=1; shift;;
            -w) QUIET_WAIT=$2; shift 2;;
            -l) printf '%s\n' "${ALL_VARIANTS[@]}"; exit 0;;
            --install) DO_INSTALL=1; shift;;
            --report) REPORT_CSV=$2; shift 2;;
            -h|--help) usage; exit 0;;
            -*) die "unknown option $1";;
            *) args+=("$1"); shift;;
        esac
    done
    if [ -n "${REPORT_CSV:-}" ]; then   # re-render only
        ROWS_CSV=$REPORT_CSV
        [ -f "$ROWS_CSV" ] || die "no such file $ROWS_CSV"
        [ -f "${ROWS_CSV%.csv}.meta" ] || die "missing ${ROWS_CSV%.csv}.meta"
        # shellcheck disable=SC1090
        . "${ROWS_CSV%.csv}.meta"
        mapfile -t VARIANTS < <(awk -F, 'NR>1 && !seen[$2]++ {print $2}' "$ROWS_CSV")
        [ "$OUT_MD" = "$PWD/peer-results.md" ] && OUT_MD="${ROWS_CSV%.csv}.md"
        write_report "$OUT_MD"; log "wrote $OUT_MD"; exit 0
    fi
    [ "$DURATION" -gt 10 ] 2>/dev/null && DURATION=10
    [ "$DURATION" -ge 1 ] 2>/dev/null || die "bad -t"
    if [ ${#args[@]} -gt 0 ]; then VARIANTS=("${args[@]}"); else VARIANTS=("${ALL_VARIANTS[@]}"); fi
    local v
    for v in "${VARIANTS[@]}"; do declare -F "v_${v}_start" >/dev/null || die "unknown variant $v (see -l)"; done
    # raw is the denominator of the ratios: always measure it
    [[ " ${VARIANTS[*]} " == *" raw "* ]] || VARIANTS=(raw "${VARIANTS[@]}")
    [ "$(id -u)" = 0 ] || die "must run as root"
    if [ $DO_INSTALL = 1 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" || die "apt-get failed"
    fi
    local c; for c in ip ping iperf3 jq ss openssl; do command -v $c >/dev/null || die "missing $c (try --install)"; done
    if [ -n "${UL_WANEM:-}" ]; then wan_setup || exit 1; fi
    case " ${VARIANTS[*]} " in *" tinc_"*) command -v tincd >/dev/null || die "missing tincd (try --install)";; esac
    case " ${VARIANTS[*]} " in *" ovpn_"*) command -v openvpn >/dev/null || die "missing openvpn (try --install)";; esac
    case " ${VARIANTS[*]} " in *" wggo "*) command -v wireguard-go >/dev/null && command -v wg >/dev/null || die "missing wireguard-go/wg (try --install)";; esac

    exec 9>/run/anc-peer-bench.lock
    flock -n 9 || die "another peer-bench.sh run is in progress"
    for v in $NS_A $NS_B $NS_M; do
        ip netns list | grep -qw "^$v" && die "namespace $v already exists (left over from an earlier run?): delete it with 'ip netns del $v'"
    done

    WORK=$(mktemp -d /tmp/anc-peer-bench.XXXXXX)
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT TERM
    ROWS_CSV="${OUT_MD%.md}.csv"
    mkdir -p "$(dirname "$OUT_MD")" || die "cannot create $(dirname "$OUT_MD")"
    echo "round,variant,status,mbps_1,mbps_p$PARALLEL,ping_avg_ms,daemon_cpu_pct,sys_cpu_pct,retrans_1,load1,iface,kind,mtu,mss,bg_cpu_pct,notes,ping_load_avg_ms,ping_load_max_ms,cpu_s_per_gbit" > "$ROWS_CSV"

    LOAD_START=$(uptime | sed 's/^ *//')
    GENERATED=$(date -u '+%Y-%m-%d %H:%M UTC')
    MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r), Debian $(cat /etc/debian_version)"
    VERSIONS="iperf3 $(iperf3 --version 2>/dev/null | head -1 | awk '{print $2}')"
    command -v tincd >/dev/null && VERSIONS+=", tinc $(tincd --version 2>/dev/null | head -1 | awk '{print $3}')"
    command -v openvpn >/dev/null && VERSIONS+=", OpenVPN $(openvpn --version 2>/dev/null | head -1 | awk '{print $2}') ($(openvpn --version 2>/dev/null | sed -n 's/^library versions: \([^,]*\).*/\1/p'))"
    command -v wireguard-go >/dev/null && VERSIONS+=", wireguard-go $(wireguard-go --version 2>/dev/null | head -1 | awk '{print $2}')"
    log "load at start: $LOAD_START"

    setup_topology || die "topology setup failed"
    VERSIONS+=", TCP congestion control in the namespaces: $(ip netns exec $NS_A cat /proc/sys/net/ipv4/tcp_congestion_control)"
    for v in "${VARIANTS[@]}"; do
        if declare -F "v_${v}_prepare" >/dev/null; then "v_${v}_prepare" || die "prepare $v failed"; fi
    done
    local r
    for r in $(seq "$ROUNDS"); do
        for v in "${VARIANTS[@]}"; do measure_variant "$v" "$r"; done
    done
    LOAD_END=$(uptime | sed 's/^ *//')
    save_meta
    write_report "$OUT_MD"
    log "load at end: $LOAD_END"
    log "results: $OUT_MD (per-run: $ROWS_CSV)"
    cat "$OUT_MD"
}

main "$@"
