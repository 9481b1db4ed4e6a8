#!/usr/bin/env bash
# Runs every check and test: format, lints, unit tests, and the tests that build network-namespace
# beds with real unbound/dnsperf/tcpdump (those need root; outside CI they skip with a reason,
# with CI=true they fail if they cannot run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# --no-fail-fast: one red test binary must not hide the rest of the run.
cargo test --workspace --locked --no-fail-fast
