#!/usr/bin/env bash
# fuzz.sh - run the coverage-guided fuzz targets (libFuzzer via cargo-fuzz)
# on the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the
# sanitizer flags it needs). Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# Default: 60 seconds for each of wire, engine, offload, text. The seed
# corpus in fuzz/corpus/ is read only; what the fuzzer finds goes to
# fuzz/corpus-work/ (kept between runs), crashes to fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(wire engine offload text)
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cd fuzz
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus-work/$t"
    echo "== fuzz target $t for ${SECS}s"
    cargo fuzz run -O "$t" "corpus-work/$t" "corpus/$t" -- \
        -max_total_time="$SECS" -max_len=70000 -print_final_stats=1 2>&1 |
        grep -E "^#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::new_units_added|ERROR|panicked" | tail -4
done
