#!/usr/bin/env bash
# Usage: service/benches/scale_baseline.sh REV   (BENCHMARKS.md, "Fleet scale")
# Runs this checkout's scale benchmark twice in one go, with the same
# VIRTUAL, DAYS and ROUNDS: first against swarmd built at REV (in a
# temporary worktree that shares this checkout's target directory, so only
# the workspace's own crates are rebuilt), then against this checkout's
# swarmd; prints both reports and the ratios of the headline figures.
set -euo pipefail
rev=$1
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/base" 2>/dev/null || true; rm -rf "$tmp"' EXIT
git -C "$root" worktree add -q --detach "$tmp/base" "$rev"
(cd "$tmp/base" && CARGO_TARGET_DIR="$root/target" cargo build --release -q -p swarm-service --bin swarmd)
cp "$root/target/release/swarmd" "$tmp/swarmd-$rev"
# The worktree's build replaced the uplifted binary, and (cargo hashes a
# workspace's own crates by their path inside the workspace) the artifacts
# of every workspace crate it rebuilt: have cargo rebuild ours.
rm -f "$root/target/release/swarmd"
git -C "$root" ls-files -z -- '*.rs' '*.proto' | (cd "$root" && xargs -0 touch)
cd "$root"
echo "== baseline: swarmd at $rev"
SWARM_BENCH_SWARMD="$tmp/swarmd-$rev" cargo bench -q --workspace --bench scale | tee "$tmp/base.txt"
echo "== this checkout: swarmd at $(git rev-parse --short HEAD)$(git diff --quiet || echo ' + changes')"
cargo bench -q --workspace --bench scale | tee "$tmp/now.txt"
seconds() { grep -m1 "$1" "$2" | sed -E 's/.* ([0-9.]+) s \(median.*/\1/'; }
round_b=$(seconds 'dry-run round with forecasts' "$tmp/base.txt")
round_n=$(seconds 'dry-run round with forecasts' "$tmp/now.txt")
risk_b=$(seconds 'dry-run round the risk-aware rule reads' "$tmp/base.txt")
risk_n=$(seconds 'dry-run round the risk-aware rule reads' "$tmp/now.txt")
mem_b=$(grep -m1 'swarmd resident memory ' "$tmp/base.txt" | sed -E 's/.*GB, ([0-9.]+) B.*/\1/')
mem_n=$(grep -m1 'swarmd resident memory ' "$tmp/now.txt" | sed -E 's/.*GB, ([0-9.]+) B.*/\1/')
disk_b=$(grep -m1 'data dir on disk' "$tmp/base.txt" | sed -E 's/.*GB, ([0-9.]+) B.*/\1/')
disk_n=$(grep -m1 'data dir on disk' "$tmp/now.txt" | sed -E 's/.*GB, ([0-9.]+) B.*/\1/')
awk -v rb="$round_b" -v rn="$round_n" -v kb="$risk_b" -v kn="$risk_n" -v mb="$mem_b" -v mn="$mem_n" -v db="$disk_b" -v dn="$disk_n" 'BEGIN {
  printf "== ratios, baseline / now: round %.1fx (%.3f s / %.3f s), round the risk-aware rule reads %.1fx (%.3f s / %.3f s), memory per sample %.1fx (%.1f B / %.1f B), disk per sample %.1fx (%.1f B / %.1f B)\n",
    rb / rn, rb, rn, kb / kn, kb, kn, mb / mn, mb, mn, db / dn, db, dn }'
