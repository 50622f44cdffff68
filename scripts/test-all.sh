#!/usr/bin/env bash
# Runs every check of the project: the test suite (nextest, then doc tests), the WebAssembly
# build of the protocol crate, clippy, rustfmt, rustdoc, and each fuzz target briefly.
# Needs: cargo-nextest, the wasm32-unknown-unknown target, a nightly toolchain with cargo-fuzz
# (`.ci/run` installs all of them).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-10}"

echo "== tests"
cargo nextest run --workspace --no-fail-fast
cargo test --workspace --doc

echo "== sotto-protocol for wasm32-unknown-unknown"
cargo build -p sotto-protocol --target wasm32-unknown-unknown

echo "== clippy, rustfmt, rustdoc"
cargo clippy --workspace --all-targets -- -D warnings
cargo fmt --all -- --check
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

if [ "$FUZZ_SECONDS" != 0 ] && [ -x fuzz/run-all.sh ]; then
  echo "== fuzz targets, ${FUZZ_SECONDS}s each"
  fuzz/run-all.sh "$FUZZ_SECONDS"
fi
echo "== all checks passed"
