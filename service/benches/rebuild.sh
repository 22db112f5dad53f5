#!/usr/bin/env bash
# Usage: rebuild.sh TREE TARGET_DIR FILE...  (BENCHMARKS.md, "Rebuild after an edit")
# For each file: append a probe function (a real edit, not a touch), build
# every target of the workspace, report the seconds, then restore the file
# and build again (not timed).
set -euo pipefail
# Restores the file even when a build fails.
trap 'if [ -f /tmp/probe.bak ] && [ -n "${f:-}" ]; then cp /tmp/probe.bak "$f"; fi' EXIT
tree=$1; target=$2; shift 2
cd "$tree"
for f in "$@"; do
  for round in 1 2; do
    cp "$f" /tmp/probe.bak
    printf '\n#[allow(dead_code)]\nfn rebuild_probe_%s() {}\n' "$round" >> "$f"
    start=$(date +%s%N)
    CARGO_TARGET_DIR=$target cargo build --workspace --all-targets -q 2>/dev/null
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    printf '%s round %s: %d.%03d s\n' "$f" "$round" $((ms / 1000)) $((ms % 1000))
    cp /tmp/probe.bak "$f"
    CARGO_TARGET_DIR=$target cargo build --workspace --all-targets -q 2>/dev/null
  done
done
