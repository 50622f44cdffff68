#!/usr/bin/env bash
# Usage: fuzz/run-all.sh [SECONDS]
# Builds every fuzz target once, then runs each for SECONDS seconds (default 10). libFuzzer
# writes what it finds to a scratch directory: the committed corpus/<target>/ and
# regressions/<target>/ are only read. Exits non-zero if any target crashed, naming them; each
# reproducer is in fuzz/artifacts/<target>/ (once fixed, move it to regressions/<target>/,
# where `cargo test` replays it). Needs a nightly toolchain and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-10}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cargo +nightly fuzz build
failed=()
for target in $(cargo +nightly fuzz list); do
  echo "== $target (${seconds}s)"
  mkdir -p "$scratch/$target"
  corpora=("$scratch/$target" "corpus/$target")
  if [ -d "regressions/$target" ]; then corpora+=("regressions/$target"); fi
  if ! cargo +nightly fuzz run "$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    failed+=("$target")
  fi
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "== crashes in: ${failed[*]} (reproducers in fuzz/artifacts/)" >&2
  exit 1
fi
echo "== no crash in any fuzz target"
