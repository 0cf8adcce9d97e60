#!/usr/bin/env bash
# Runs one fuzz target under AFL++ for a fixed time, then prints its stats and any crash.
# Usage: fuzz/run.sh decode|proxy [seconds, default 300]
# Needs cargo-afl (cargo install cargo-afl; its install builds the AFL++ runtime for the
# installed rustc; after a toolchain change: cargo afl config --build --force). See README.md.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: run.sh decode|proxy [seconds]}
secs=${2:-300}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
if ! cargo afl --version >/dev/null 2>&1; then
    echo "cargo-afl is not installed: cargo install cargo-afl" >&2
    exit 2
fi
cargo afl build --release --bin "$target"
mkdir -p out
# AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES: containers often pipe core dumps to a handler AFL++
# cannot change; AFL_SKIP_CPUFREQ: no CPU governor in a VM; AFL_NO_UI: plain log lines.
echo "fuzzing $target for ${secs}s (AFL++ log: fuzz/out/$target.log)"
AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 \
    cargo afl fuzz -V "$secs" -i "corpus/$target" -o "out/$target" \
    "$CARGO_TARGET_DIR/release/$target" >"out/$target.log" 2>&1 || true
stats="out/$target/default/fuzzer_stats"
grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|bitmap_cvg|saved_crashes|saved_hangs) ' "$stats"
crashes=$(find "out/$target/default/crashes" -type f -name 'id:*' | wc -l)
if [ "$crashes" -gt 0 ]; then
    echo "$crashes crashing input(s) in out/$target/default/crashes/ (replay: $CARGO_TARGET_DIR/release/$target < FILE)"
    exit 1
fi
