#!/usr/bin/env bash
# The risk-aware policy against the tuned-reactive frontier F(m), with the
# shipped defaults: on the reference scenario (the full default grid of
# 3,960 reactive settings) and on generated scenarios over several seeds
# (a coarser grid of the same width, 600 settings, to keep the run short:
# a coarser grid can only raise F, so the seeds' figures flatter the policy
# a little; the reference scenario's do not).
#
#   service/benches/risk_frontier.sh [SWARMCTL]
#
# Env: TRACE (the Azure trace), REFERENCE (the reference scenario), SEEDS
# ("1 2 3 4 5"), PER_HOST (40: requested cores per 16-core host, the
# reference's 2.5x; each seed gets as many hosts as its drawn cores need),
# GRID, SKIP_REFERENCE=1, PHASES ("0 1 2": also replay the configured
# settings with the rule's cadence shifted by each of these many steps,
# `--risk-phase`, and print a table of them with their mean).
# Prints one row per scenario and the mean of `fewer_than_frontier`
# (1 − overloads / F(m) at m = the policy's own migrations). The risk
# policy runs with its self-tuning (the default); the last columns replay it
# again with `--self-tuning false` (the configured settings throughout) and
# place that against the same frontier. With PHASES, a last table shows
# the configured rule at each phase: paced by its moves (the default) every
# phase should give the same result, and a row that differs says the
# timing still decides; paced by its runs they differed (BENCHMARKS.md,
# "Pacing the moves, not the looks").
set -euo pipefail
SWARMCTL=${1:-target/release/swarmctl}
TRACE=${TRACE:-../shared/datasets/azure-vm-cpu-2017/vm_cpu_readings.csv}
REFERENCE=${REFERENCE:-../shared/reference/replay-scenario-dev-max_cpu.json}
SEEDS=${SEEDS:-1 2 3 4 5}
PER_HOST=${PER_HOST:-40}
overcommit=$(jq -n "$PER_HOST / 16")
GRID=${GRID:-threshold=0.6,0.7,0.8,0.9,1.0,1.1;target=0.4,0.5,0.6,0.7,0.75;budget=1,2,3,5;cooldown=3,12,48,144,576}
POLICIES=none,reactive,risk,reactive-frontier
PHASES=${PHASES:-}
phase_rows=()
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# F(m) of a report's frontier (none's overloads when no swept setting
# moved at most m times).
frontier_at() { # json m
  jq --argjson m "$2" '([.reactive_frontier[] | select(.migrations <= $m) | .overload_intervals] | min) // .policies.none.overload_intervals' "$1"
}

row() { # name json fixed-json
  local fm fo f
  fo=$(jq .policies.risk.overload_intervals "$3"); fm=$(jq .policies.risk.migrations "$3")
  f=$(frontier_at "$2" "$fm")
  jq -r --arg name "$1" --argjson fo "$fo" --argjson fm "$fm" --argjson f "$f" '
    .against_frontier.risk as $r | .policies as $p |
    [$name, $p.none.overload_intervals, ($p.reactive.overload_intervals|tostring) + " / " + ($p.reactive.migrations|tostring),
     ($p.risk.overload_intervals|tostring) + " / " + ($p.risk.migrations|tostring), $r.frontier_overload_intervals,
     (($r.fewer_than_frontier * 1000 | round) / 10 | tostring) + " %", ($p.risk.self_tuning.changes | length),
     ($fo|tostring) + " / " + ($fm|tostring), $f, (((1 - $fo / $f) * 1000 | round) / 10 | tostring) + " %",
     .frontier_grid.settings]
    | map(tostring) | "| " + join(" | ") + " |"' "$2"
}

# The configured rule at each of PHASES against a report's frontier, as a
# row of phase_rows (phase 0 is the configured replay already made): name
# frontier-json fixed-json replay-args…
phases() {
  [ -n "$PHASES" ] || return 0
  local name=$1 front=$2 fixed=$3 cells="" total=0 n=0 o m f u run
  shift 3
  for p in $PHASES; do
    run=$fixed
    if [ "$p" != 0 ]; then
      run=$out/phase.out
      "$SWARMCTL" replay --quiet --trace "$TRACE" "$@" --policy risk --self-tuning false --risk-phase "$p" --output json > "$run"
    fi
    o=$(jq .policies.risk.overload_intervals "$run"); m=$(jq .policies.risk.migrations "$run")
    f=$(frontier_at "$front" "$m")
    u=$(jq -n --argjson o "$o" --argjson f "$f" '(1 - $o / $f) * 100')
    cells+=" | $o / $m, $(jq -n --argjson u "$u" '$u * 10 | round / 10') %"
    total=$(jq -n --argjson t "$total" --argjson u "$u" '$t + $u'); n=$((n + 1))
  done
  phase_rows+=("| $name$cells | $(jq -n --argjson t "$total" --argjson n "$n" '$t / $n * 10 | round / 10') % |")
}

echo "| scenario | none | reactive (default) overloads / migrations | risk (self-tuning) overloads / migrations | F(m) at its m | under F(m) | setting changes | risk (configured settings) overloads / migrations | F(m) at its m | under F(m) | settings swept |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
if [ -z "${SKIP_REFERENCE:-}" ]; then
  "$SWARMCTL" replay --quiet --trace "$TRACE" --scenario "$REFERENCE" --policy "$POLICIES" --output json > "$out/ref.json"
  "$SWARMCTL" replay --quiet --trace "$TRACE" --scenario "$REFERENCE" --policy risk --self-tuning false --output json > "$out/ref.fixed"
  row "reference" "$out/ref.json" "$out/ref.fixed"
  phases "reference" "$out/ref.json" "$out/ref.fixed" --scenario "$REFERENCE"
fi
for s in $SEEDS; do
  # The seed's requested cores, then the fewest hosts that take them at
  # PER_HOST each (first-fit-decreasing may need one more).
  req=$("$SWARMCTL" replay --quiet --trace "$TRACE" --seed "$s" --hosts 64 --policy none --output json | jq .scenario.requested_cores)
  hosts=$(( (${req%.*} + PER_HOST - 1) / PER_HOST ))
  until "$SWARMCTL" replay --quiet --trace "$TRACE" --seed "$s" --hosts "$hosts" --overcommit "$overcommit" \
      --policy "$POLICIES" --frontier-grid "$GRID" --output json > "$out/seed$s.json" 2> "$out/err"; do
    grep -q "fits on no host" "$out/err" || { cat "$out/err" >&2; exit 1; }
    hosts=$((hosts + 1))
  done
  "$SWARMCTL" replay --quiet --trace "$TRACE" --seed "$s" --hosts "$hosts" --overcommit "$overcommit" \
      --policy risk --self-tuning false --output json > "$out/seed$s.fixed"
  row "seed $s ($hosts hosts, $req requested cores)" "$out/seed$s.json" "$out/seed$s.fixed"
  phases "seed $s" "$out/seed$s.json" "$out/seed$s.fixed" --seed "$s" --hosts "$hosts" --overcommit "$overcommit"
done
jq -s '[.[].against_frontier.risk.fewer_than_frontier] | "mean under F(m): \((add / length * 1000 | round) / 10) % over \(length) scenarios"' -r "$out"/*.json
if [ -n "$PHASES" ]; then
  echo
  echo "| scenario (configured settings) |$(for p in $PHASES; do printf ' risk phase %s, overloads / migrations, under F(m) |' "$p"; done) mean under F(m) |"
  echo "|---|$(for p in $PHASES; do printf -- '---:|'; done)---:|"
  printf '%s\n' "${phase_rows[@]}"
fi
