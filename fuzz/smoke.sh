#!/usr/bin/env bash
# CI smoke of the fuzz targets: builds them and runs each for a short time
# (FUZZ_SMOKE_SECONDS, 20 by default) over its checked-in corpus
# (corpus/<target>/, read only: what a run finds goes to a temporary
# directory). Any crash, panic or sanitizer report fails the script; the
# crashing input is left under artifacts/<target>/. Exit 77 means cargo-fuzz
# is missing and cannot be installed (the test that runs this skips then).
#
# The long runs are the same command with more time, one target at a time:
#   RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz run dispatch -- -max_total_time=600 -rss_limit_mb=2048
set -euo pipefail
cd "$(dirname "$0")"

# cargo-fuzz passes `-Z` flags to rustc (sanitizer, coverage instrumentation)
# and only nightly accepts them; the toolchain here is stable and no nightly
# can be fetched, so RUSTC_BOOTSTRAP=1 lets stable accept them.
export RUSTC_BOOTSTRAP=1
# The module logs a broken answer at error level on stderr; thousands of
# lines a second would only slow the fuzzer down.
export HSMLINK_LOG="${HSMLINK_LOG:-off}"
# Our own target directory: the instrumented build must not clobber the
# workspace's (which the rest of test.sh uses).
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
seconds="${FUZZ_SMOKE_SECONDS:-20}"
# AddressSanitizer works with RUSTC_BOOTSTRAP on stable (its runtime ships
# with the standard library); debug assertions and overflow checks are on
# either way (Cargo.toml). FUZZ_SANITIZER=none is the fallback.
sanitizer="${FUZZ_SANITIZER:-address}"
targets=(read_frame decode_request decode_response dispatch module_parse)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "smoke: installing cargo-fuzz"
    if ! cargo install cargo-fuzz --locked; then
        echo "smoke: SKIPPED: cargo-fuzz is not installed and cannot be installed" >&2
        exit 77
    fi
fi

start=$SECONDS
cargo fuzz build --sanitizer "$sanitizer"
echo "smoke: build took $((SECONDS - start)) s"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$work/$target"
    log="$work/$target.log"
    if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "$work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "smoke: FAILED: $target (input under artifacts/$target/)" >&2
        exit 1
    fi
    # The last status line: executions and coverage.
    echo "smoke: ok - $target: $(grep -E '^#[0-9]+' "$log" | tail -n 1)"
done
echo "smoke: all ${#targets[@]} targets ok in $((SECONDS - start)) s"
