#!/usr/bin/env bash
# run.sh: fuzz every decoder of on-disk bytes for a bounded time; fail if any target crashes.
#
# Usage:  fuzz/run.sh [TARGET...]          (default: every target of `cargo fuzz list`)
#   FUZZ_SECONDS=60        seconds per target (libFuzzer -max_total_time)
#   FUZZ_TIMEOUT=10        seconds one input may take before it counts as a hang (crash)
#   FUZZ_BUILD_FLAGS=      extra `cargo fuzz build/run` flags, e.g. "-s none" or "--jobs 1"
#   FUZZ_ARGS=             extra libFuzzer flags, e.g. "-max_len=65536"
#   CARGO_TARGET_DIR       honoured; e.g. /tmp/fuzz-target to keep clear of the main build
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer, sanitizer coverage); on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks them, so this script sets it. cargo-fuzz's defaults
# apply: release build with debug assertions and overflow checks, AddressSanitizer.
#
# Corpora grow in fuzz/corpus/<target>/ (kept between runs, not committed); the committed
# seeds in fuzz/seeds/<target>/ and dictionaries in fuzz/dicts/<target>.dict are used when
# present. A crashing input is saved by libFuzzer under fuzz/artifacts/<target>/; reproduce
# with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> fuzz/artifacts/<target>/<file>`.
# Each target's output goes to fuzz/artifacts/logs/<target>.log.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE"

SECS=${FUZZ_SECONDS:-60}
HANG=${FUZZ_TIMEOUT:-10}
read -r -a BUILD_FLAGS <<<"${FUZZ_BUILD_FLAGS:-}"
read -r -a EXTRA_ARGS <<<"${FUZZ_ARGS:-}"
export RUSTC_BOOTSTRAP=1

die() { printf 'fuzz/run.sh: %s\n' "$*" >&2; exit 2; }
[[ $SECS =~ ^[0-9]+$ ]] && ((SECS > 0)) || die "FUZZ_SECONDS must be a positive integer (got '$SECS')"
[[ $HANG =~ ^[0-9]+$ ]] && ((HANG > 0)) || die "FUZZ_TIMEOUT must be a positive integer (got '$HANG')"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

if (($#)); then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi
((${#TARGETS[@]})) || die "no fuzz targets"

# Build everything once up front, so a build error is reported as one, not as a crash, and
# the per-target time budget is spent fuzzing.
cargo fuzz build "${BUILD_FLAGS[@]}"

mkdir -p artifacts/logs
failed=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t"
    corpora=("corpus/$t")
    [[ -d seeds/$t ]] && corpora+=("seeds/$t")
    args=(-max_total_time="$SECS" -timeout="$HANG" -print_final_stats=1)
    [[ -f dicts/$t.dict ]] && args+=(-dict="dicts/$t.dict")
    args+=("${EXTRA_ARGS[@]}")
    log=artifacts/logs/$t.log
    printf '== %s: %ss\n' "$t" "$SECS"
    if cargo fuzz run "${BUILD_FLAGS[@]}" "$t" "${corpora[@]}" -- "${args[@]}" >"$log" 2>&1; then
        # Last status line (execs, coverage, corpus) and the final stats.
        grep -E '^#[0-9]+' "$log" | tail -n 1 || true
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" | tr '\n' ' ' || true
        echo
    else
        failed+=("$t")
        echo "!! $t FAILED; last lines of $log:"
        tail -n 40 "$log"
        ls -1 "artifacts/$t/" 2>/dev/null | sed 's/^/   artifact: /' || true
    fi
done

if ((${#failed[@]})); then
    echo "fuzz/run.sh: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz/run.sh: ${#TARGETS[@]} target(s) ran ${SECS}s each without a crash"
