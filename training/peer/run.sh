#!/usr/bin/env bash
# The forecaster against its peer, on the same data and machine, in one run:
# Nixtla mlforecast + LightGBM (training/peer/mlforecast_peer.py, pinned in
# requirements.txt, installed into target/peer-venv) and `swarm-train
# evaluate`, both under swarm-train's protocol. Prints both MASE tables,
# both wall times and the ratios the forecaster's goal is stated in.
#
#   training/peer/run.sh [--metric avg_cpu,max_cpu] [--dataset FILE] [--entities N]
#
# Wall times: the peer's covers its fit and backtest (not reading the CSV);
# swarm-train's is the whole command, reading and regularising the CSV
# included, so the ratio is if anything unfair to swarm-train.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dataset="${SWARM_DATASETS:-$root/../shared/datasets}/azure-vm-cpu-2017/vm_cpu_readings.csv"
metrics="avg_cpu,max_cpu"
entities=()
while [ $# -gt 0 ]; do
  case "$1" in
    --metric) metrics="$2"; shift 2 ;;
    --dataset) dataset="$2"; shift 2 ;;
    --entities) entities=(--entities "$2"); shift 2 ;;
    *) echo "unknown argument $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
[ -f "$dataset" ] || { echo "no dataset at $dataset (set SWARM_DATASETS or --dataset)" >&2; exit 2; }
venv="$root/target/peer-venv"
req="$root/training/peer/requirements.txt"
if ! cmp -s "$req" "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/requirements.txt"
fi
cargo build -q --release -p swarm-training --bin swarm-train
out="$root/target/peer"
mkdir -p "$out"
threads="$(nproc)"
IFS=, read -ra list <<<"$metrics"
for metric in "${list[@]}"; do
  echo "== $metric: mlforecast + LightGBM ($threads threads)" >&2
  "$venv/bin/python" "$root/training/peer/mlforecast_peer.py" --dataset "$dataset" --metric "$metric" \
    --threads "$threads" "${entities[@]}" >"$out/peer-$metric.json"
  echo "== $metric: swarm-train evaluate" >&2
  start=$(date +%s.%N)
  # With the upper-quantile model the default artifact carries, so the
  # time is that of what swarmd ships.
  "$root/target/release/swarm-train" evaluate --dataset "$dataset" --metric "$metric" "${entities[@]}" \
    --upper-quantile 0.95 --report "$out/swarm-$metric.json" --quiet >/dev/null
  end=$(date +%s.%N)
  "$venv/bin/python" - "$out/peer-$metric.json" "$out/swarm-$metric.json" "$start" "$end" <<'PY'
import json, sys
peer, swarm = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
secs = float(sys.argv[4]) - float(sys.argv[3])
groups = ["h1", "h1-3", "h4-6", "h7-12", "h1-12"]
print(f"## {peer['metric']}: {peer['series']} series (peer), {swarm['series']} series (swarm-train)\n")
print("| method | " + " | ".join(groups) + " |")
print("|---|" + "---:|" * len(groups))
rows = [("swarm-train", swarm["models"]["swarm"]), ("mlforecast + LightGBM", peer["models"]["lightgbm"])]
for m in ("naive", "seasonal_naive", "moving_average"):
    rows += [(f"{m} (swarm-train)", swarm["models"][m]), (f"{m} (peer script)", peer["models"][m])]
for name, g in rows:
    print(f"| {name} | " + " | ".join(f"{g[k]['mase']:.3f}" for k in groups) + " |")
s, p = swarm["models"]["swarm"]["h1-12"]["mase"], peer["models"]["lightgbm"]["h1-12"]["mase"]
print(f"\nMASE h1-12: swarm-train {s:.3f}, LightGBM {p:.3f}, ratio {s / p:.3f} (goal <= 0.9)")
print(f"90 % interval coverage (swarm-train): {swarm['coverage90'] * 100:.1f} % (goal 88-92 %); "
      f"targets at or below its 0.95 quantile model: {swarm['upper_coverage'] * 100:.1f} %")
print(f"wall time: LightGBM fit + backtest {peer['fit_and_backtest_seconds']:.1f} s, "
      f"swarm-train evaluate {secs:.1f} s, speed-up {peer['fit_and_backtest_seconds'] / secs:.1f}x (goal >= 10x)\n")
PY
done
