#!/usr/bin/env bash
# The test command. Builds the release artifacts the tests load (the server
# binary and libhsmlink_pkcs11.so), then runs every test of the workspace:
# unit and property tests, the end-to-end tests against a real server, and
# the third-party clients of conformance/ (pkcs11-tool, ...).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --workspace --locked
cargo test --release --workspace --locked --no-fail-fast
