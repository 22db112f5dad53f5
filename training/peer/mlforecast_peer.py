"""The practitioner's peer of `swarm-train evaluate`: Nixtla mlforecast with
LightGBM, scored under exactly swarm-train's protocol.

Why a script and not a figure quoted from elsewhere: the forecaster's goal is
stated against this peer, so anyone must be able to rerun it on the same data
and machine (`training/peer/run.sh` runs both and prints both tables).

Protocol (training/src/backtest.rs): every series is put on its regular
5-minute grid (gaps of up to 3 points interpolated, as swarm-train does); the
test window is the last 576 points (2 days); the model is fitted only on the
points before it; origins are every 12 points from the point just before the
window while all 12 horizons stay inside it; MASE divides each series' MAE by
its in-sample MAE of the one-day seasonal naive before the window, and the
table averages per-series MAE and MASE per horizon group. Naive and seasonal
naive are scored on the same origins, so their figures must match
swarm-train's: that checks the protocol.

Peer configuration (the issue's, a practitioner's usual choice): one pooled
direct model per horizon, absolute-error objective, 300 trees of 63 leaves,
learning rate 0.05, row and column subsampling 0.8, lags 1-12, 287-289 and
2016, rolling mean and std over 12 and rolling mean over 288 steps (of lag 1),
hour, minute and day of week.

Output: one JSON object on stdout (see the end of `main`).
"""

import argparse
import json
import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlforecast import MLForecast
from mlforecast.lag_transforms import RollingMean, RollingStd

WINDOW, EVERY, MAX_H, SEASON, MAX_FILL = 576, 12, 12, 288, 3
GROUPS = [("h1", 1, 1), ("h1-3", 1, 3), ("h4-6", 4, 6), ("h7-12", 7, 12), ("h1-12", 1, 12)]


def regular(df, metric):
    """Per series: values on the 5-minute grid from its first to last reading,
    gaps of up to MAX_FILL points linearly interpolated, longer ones NaN."""
    out = {}
    for vm, g in df.groupby("vmid", sort=False):
        g = g.sort_values("timestamp")
        t0, t1 = int(g.timestamp.iloc[0]), int(g.timestamp.iloc[-1])
        n = (t1 - t0) // 300 + 1
        v = np.full(n, np.nan)
        idx = ((g.timestamp.values - t0) // 300).astype(int)
        v[idx] = g[metric].values
        s = pd.Series(v).interpolate(limit=MAX_FILL, limit_area="inside", limit_direction="forward")
        # pandas fills the first MAX_FILL points of a longer gap; swarm-train
        # fills only gaps of at most MAX_FILL points.
        isnan = np.isnan(v)
        run_start = None
        for i in range(n + 1):
            if i < n and isnan[i]:
                run_start = i if run_start is None else run_start
            elif run_start is not None:
                if i - run_start > MAX_FILL:
                    s.iloc[run_start:i] = np.nan
                run_start = None
        out[vm] = (t0, s.values)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--metric", required=True)
    ap.add_argument("--entities", type=int)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-series", help="also write each series' h1 and h1-12 MASE here (JSON)")
    a = ap.parse_args()

    raw = pd.read_csv(a.dataset)
    series = regular(raw, a.metric)
    if a.entities:
        series = dict(list(series.items())[: a.entities])

    started = time.perf_counter()
    frames, cuts = [], {}
    for vm, (t0, v) in series.items():
        n = len(v)
        cuts[vm] = n - WINDOW
        frames.append(pd.DataFrame({
            "unique_id": str(vm),
            "ds": pd.to_datetime(t0 + 300 * np.arange(n), unit="s"),
            "y": v,
        }))
    full = pd.concat(frames, ignore_index=True)
    full["i"] = full.groupby("unique_id").cumcount()
    full["cut"] = full.unique_id.map({str(k): c for k, c in cuts.items()})
    train = full[full.i < full.cut][["unique_id", "ds", "y"]].dropna()

    model = lgb.LGBMRegressor(
        objective="l1", n_estimators=300, num_leaves=63, learning_rate=0.05,
        subsample=0.8, subsample_freq=1, colsample_bytree=0.8,
        n_jobs=a.threads, verbosity=-1, random_state=0,
    )
    mlf = MLForecast(
        models={"lgbm": model},
        freq="5min",
        lags=list(range(1, 13)) + [287, 288, 289, 2016],
        lag_transforms={1: [RollingMean(12), RollingStd(12), RollingMean(288)]},
        date_features=["hour", "minute", "dayofweek"],
        num_threads=a.threads,
    )
    mlf.fit(train, max_horizon=MAX_H)
    fitted = time.perf_counter()

    # Forecast from every origin: history up to and including it.
    preds = {}
    # t = cut - 1 + k * EVERY while t + MAX_H < n, n = cut + WINDOW.
    n_origins = (WINDOW - MAX_H) // EVERY + 1
    for k in range(n_origins):
        hist = full[full.i <= full.cut - 1 + k * EVERY][["unique_id", "ds", "y"]]
        # A gap in the history is handed over as is: LightGBM treats NaN
        # features as missing, which is the peer's own behaviour.
        fc = mlf.predict(h=MAX_H, new_df=hist)
        fc["h"] = fc.groupby("unique_id").cumcount() + 1
        for uid, h, p in zip(fc.unique_id, fc.h, fc.lgbm):
            preds[(uid, k, h)] = p
    done = time.perf_counter()
    print(f"peer: {len(preds)} forecasts from {n_origins} origins", file=sys.stderr)

    totals = {}
    per_series = {}
    n_series = 0
    for vm, (_, v) in series.items():
        n, cut = len(v), cuts[vm]
        if n < WINDOW + SEASON + 1:
            continue
        e = np.abs(v[SEASON:cut] - v[: cut - SEASON])
        e = e[~np.isnan(e)]
        if len(e) == 0 or e.sum() == 0:
            continue
        denom = e.mean()
        acc = {}
        k, t = 0, cut - 1
        while t + MAX_H < n:
            ma_from = t + 1 - min(12, t + 1)
            ma = v[ma_from : t + 1].mean()
            for h in range(1, MAX_H + 1):
                y, sn = v[t + h], v[t + h - SEASON]
                p = preds.get((str(vm), k, h), np.nan)
                if np.isnan(y) or np.isnan(v[t]) or np.isnan(sn) or np.isnan(ma) or np.isnan(p):
                    continue
                for m, pr in (("lightgbm", p), ("naive", v[t]), ("seasonal_naive", sn), ("moving_average", ma)):
                    s, c = acc.get((m, h), (0.0, 0))
                    acc[(m, h)] = (s + abs(y - pr), c + 1)
            t += EVERY
            k += 1
        n_series += 1
        for m in ("lightgbm", "naive", "seasonal_naive", "moving_average"):
            for g, lo, hi in GROUPS:
                s = sum(acc.get((m, h), (0.0, 0))[0] for h in range(lo, hi + 1))
                c = sum(acc.get((m, h), (0.0, 0))[1] for h in range(lo, hi + 1))
                if c == 0:
                    continue
                mae = s / c
                per_series.setdefault(str(vm), {})[f"{m} {g}"] = mae / denom
                tm, ts, tk = totals.get((m, g), (0.0, 0.0, 0))
                totals[(m, g)] = (tm + mae, ts + mae / denom, tk + 1)

    if a.per_series:
        with open(a.per_series, "w") as f:
            json.dump(per_series, f)
    models = {}
    for (m, g), (mae, mase, k) in totals.items():
        models.setdefault(m, {})[g] = {"mae": mae / k, "mase": mase / k}
    json.dump({
        "metric": a.metric,
        "series": n_series,
        "models": models,
        "fit_seconds": fitted - started,
        "fit_and_backtest_seconds": done - started,
        "threads": a.threads,
        "versions": {"mlforecast": sys.modules["mlforecast"].__version__, "lightgbm": lgb.__version__},
    }, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
