#!/usr/bin/env bash
# Runs every check of the project: the test suite (nextest, then doc tests, then the protocol's
# tests again with the pure-Rust crypto provider), the load generator briefly on SQLite and
# PostgreSQL, the WebAssembly build of the protocol crate, clippy, rustfmt, rustdoc, and each
# fuzz target briefly.
# Needs nothing but a Rust toolchain: `scripts/setup.sh`, run first, installs cargo-nextest, the
# wasm32-unknown-unknown target and a nightly toolchain with cargo-fuzz when missing, and starts
# PostgreSQL (127.0.0.1:5432) and NATS (127.0.0.1:4222) when they are down. FUZZ_SECONDS
# (default 10) sets the time per fuzz target; 0 skips fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
FUZZ_SECONDS="$FUZZ_SECONDS" scripts/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "== tests"
cargo nextest run --workspace --no-fail-fast 2>&1 | tee "$log"
cargo test --workspace --doc

echo "== sotto-protocol with the pure-Rust X25519 provider (as on WebAssembly)"
cargo nextest run -p sotto-protocol --no-default-features --no-fail-fast 2>&1 | tee -a "$log"

echo "== benchmarks run once each (figures: cargo bench -p sotto-protocol --bench protocol)"
cargo bench -p sotto-protocol --bench protocol -- --test

echo "== load generator briefly (figures: README, Benchmarks)"
# The test profile reuses the binaries the test run just built, sotto-server among them.
bench() { cargo run -q --profile test -p sotto-bench -- "$@"; }
bench throughput --senders 2 --messages 20
bench throughput --senders 2 --messages 40 --in-flight 8
bench throughput --senders 2 --messages 20 --unanswered
bench throughput --senders 2 --messages 20 --backend postgres
bench idle --connections 200 --hold-secs 1

echo "== sotto-protocol for wasm32-unknown-unknown"
cargo build -p sotto-protocol --target wasm32-unknown-unknown

echo "== clippy, rustfmt, rustdoc"
cargo clippy --workspace --all-targets -- -D warnings
cargo fmt --all -- --check
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

if [ "$FUZZ_SECONDS" != 0 ]; then
  echo "== fuzz targets, ${FUZZ_SECONDS}s each"
  fuzz/run-all.sh "$FUZZ_SECONDS"
fi

passed=$(grep -oE '[0-9]+ tests run: [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
echo "== all checks passed"
echo "tests: ${passed} passed, 0 failed"
