#!/usr/bin/env bash
# Runs every check and test: format, lints, unit tests, and the tests that build network-namespace
# beds with real unbound/dnsperf/tcpdump (those need root; outside CI they skip with a reason,
# with CI=true they fail if they cannot run). Installs everything they use (scripts/setup.sh test).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
# Tests run python3, gunicorn, kubectl, kubernetes-validate, checkov, hadolint by name: the
# project's virtualenv comes first on PATH, whatever else this machine has.
HEADROOM_VENV="$PWD/.venv"
export HEADROOM_VENV PATH="$HEADROOM_VENV/bin:$PATH"
cargo fmt --all -- --check
if [ ! -d target/debug/deps ]; then
  echo "test: first build of every crate and test (debug): about 7 minutes on a 2-core machine, then about 15 minutes of tests" >&2
fi
cargo clippy --workspace --all-targets --locked -- -D warnings
# --no-fail-fast: one red test binary must not hide the rest of the run.
cargo test --workspace --locked --no-fail-fast
