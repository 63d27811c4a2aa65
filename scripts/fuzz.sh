#!/usr/bin/env bash
# fuzz.sh - run the coverage-guided fuzz targets (libFuzzer via cargo-fuzz)
# on the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the
# sanitizer flags it needs). Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Default: 60 seconds for each of wire, engine, offload, text, dialer. The seed
# corpus in fuzz/corpus/ is read only; what the fuzzer finds goes to
# fuzz/corpus-work/ (kept between runs), crashes to fuzz/artifacts/.
# FUZZ_ARGS adds libFuzzer options, e.g. FUZZ_ARGS=-len_control=0 to try
# long inputs at once instead of letting the length limit grow slowly.
# A target's dictionary, fuzz/dict/TARGET.dict, is used when it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(wire engine offload text dialer)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
cargo fuzz build -O
failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus-work/$t"
    dict=()
    [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
    echo "== fuzz target $t for ${SECS}s"
    if ! cargo fuzz run -O "$t" "corpus-work/$t" "corpus/$t" -- \
        -max_total_time="$SECS" -max_len=70000 -print_final_stats=1 "${dict[@]}" ${FUZZ_ARGS:-} \
        > "corpus-work/$t.log" 2>&1; then
        failed+=("$t")
    fi
    grep -E "^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::new_units_added|ERROR|panicked" \
        "corpus-work/$t.log" | tail -5
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failures in ${failed[*]}: inputs in fuzz/artifacts/, logs in fuzz/corpus-work/" >&2
    exit 1
fi
echo "fuzz: ${TARGETS[*]}: no failure in ${SECS}s each"
