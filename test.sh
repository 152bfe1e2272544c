#!/usr/bin/env bash
# The test command. Builds the release artifacts the tests load (the server
# binary and libhsmlink_pkcs11.so), then runs every test of the workspace:
# unit and property tests, the end-to-end tests against a real server, and
# the third-party clients of conformance/ (pkcs11-tool, ...). Ends with one
# summary line over all test binaries.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --workspace --locked

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "\nall tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
