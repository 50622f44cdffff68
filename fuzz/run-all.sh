#!/usr/bin/env bash
# Builds every fuzz target once, then runs each for SECONDS seconds (default 10) over a scratch
# copy of its corpus, so that the committed corpus in fuzz/corpus/ is only read. Exits non-zero
# on the first crash; the reproducer is in fuzz/artifacts/<target>/ (move it to
# fuzz/regressions/<target>/ once fixed, where `cargo test` replays it).
# Needs a nightly toolchain and cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH="${1:-10}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cargo +nightly fuzz build
for target in $(cargo +nightly fuzz list); do
  echo "== $target (${SECONDS_EACH}s)"
  mkdir -p "$scratch/$target"
  corpora=("$scratch/$target" "corpus/$target")
  if [ -d "regressions/$target" ]; then corpora+=("regressions/$target"); fi
  cargo +nightly fuzz run "$target" "${corpora[@]}" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
echo "== no crash in any fuzz target"
