#!/usr/bin/env bash
# Process-crash torture in CI: 20 cycles of `cask torture` per sync policy that matters
# (always: every acknowledged write must survive SIGKILL; interval: the same, since SIGKILL
# keeps the page cache). The 1,000-cycle run is documented in docs/RELIABILITY.md.
# Usage: .ci/torture.sh [cycles]   (builds the debug binary if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
cycles="${1:-20}"
cargo build -q -p cask
bin="$PWD/target/debug/cask"
for sync in always interval:50; do
  dir="$(mktemp -d)"
  "$bin" --dir "$dir/data" torture --cycles "$cycles" --clients 4 --sync "$sync" --seed "${CASK_TORTURE_SEED:-$RANDOM}"
  rm -rf "$dir"
done
