"""Measure the real label and signal statistics that the synthetic generator is fitted to.

    python bench/fit_synthetic_stats.py                      # real statistics only
    python bench/fit_synthetic_stats.py --synthetic DIR      # real vs a generated folder

Label statistics come from `all_train_events.csv` (277 series, events only); signal statistics
from the one real series `train_series.parquet` with its `train_events.csv`. The numbers printed
here are the constants written into `src/sleepdetect/data/synthetic.py`; rerun this script when
the generator changes and compare the two columns. Both inputs live in ../shared/data/cmi (or
$SLEEPDETECT_REAL_DATA) and are never copied into the repository.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("SLEEPDETECT_REAL_DATA", REPO.parent / "shared" / "data" / "cmi"))
QS = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99]
# probabilities of the length knots: deciles plus the thin tails (lengths up to 3x the mean)
LENGTH_QS = [0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1]


def read_events(path: Path) -> pl.DataFrame:
    e = pl.read_csv(path, schema_overrides={"step": pl.Int64, "night": pl.Int64})
    return e.with_columns(
        local=pl.col("timestamp").str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S")
    )


def _clock(col: str, lo: float) -> pl.Expr:
    """Local clock time in hours, wrapped into [lo, lo + 24) so nights do not split at 0 h."""
    h = pl.col(col).dt.hour() + pl.col(col).dt.minute() / 60 + pl.col(col).dt.second() / 3600
    return (h - lo) % 24 + lo


def nights_table(e: pl.DataFrame) -> pl.DataFrame:
    """One row per labelled night with both events: onset clock (h after noon), wakeup clock
    (h after midnight, may be negative), sleep length (h), weekday of the onset evening."""
    w = e.filter(pl.col("step").is_not_null()).pivot(
        on="event", index=["series_id", "night"], values=["step", "local"]
    )
    w = w.drop_nulls()
    return w.with_columns(
        onset_h=_clock("local_onset", 12.0),
        wakeup_h=_clock("local_wakeup", -6.0),
        sleep_h=(pl.col("step_wakeup") - pl.col("step_onset")) * 5 / 3600,
        weekday=(pl.col("local_onset") - pl.duration(hours=12)).dt.weekday(),
    )


def label_stats(e: pl.DataFrame) -> dict[str, object]:
    """Everything the generator's label constants are fitted from."""
    out: dict[str, object] = {}
    ev = e.filter(pl.col("step").is_not_null())
    out["series"] = e["series_id"].n_unique()
    out["seconds_zero"] = float((ev["local"].dt.second() == 0).mean())
    start = ev.with_columns(start=pl.col("local") - pl.duration(seconds=pl.col("step") * 5))
    start = start.group_by("series_id").agg(pl.col("start").min())
    out["start_weekday_counts"] = _counts(start["start"].dt.weekday(), range(1, 8))
    out["start_hour_counts"] = _counts(start["start"].dt.hour(), range(0, 24))
    out["start_minute_counts"] = _counts(start["start"].dt.minute(), range(0, 60, 15))
    out["start_range"] = (str(start["start"].min()), str(start["start"].max()))

    nights = e.group_by("series_id").agg(pl.col("night").max())["night"].to_numpy()
    out["nights_mean"] = float(nights.mean())
    out["nights_q"] = np.quantile(nights, QS)
    out["nights_ratio_knots"] = np.quantile(nights / nights.mean(), LENGTH_QS)

    per_night = e.group_by("series_id", "night").agg(n=pl.col("step").is_not_null().sum())
    out["night_rows"] = per_night.height
    out["share_nights_empty"] = float((per_night["n"] == 0).mean())
    out["share_nights_one_event"] = float((per_night["n"] == 1).mean())
    out.update(_empty_night_structure(per_night))

    t = nights_table(e)
    for c in ("onset_h", "wakeup_h", "sleep_h"):
        x = t[c].to_numpy()
        out[f"{c}_mean"], out[f"{c}_sd"], out[f"{c}_q"] = x.mean(), x.std(), np.quantile(x, QS)
    out.update(_mixed_model(t))
    return out


def _counts(s: pl.Series, values: range) -> list[int]:
    vc = dict(zip(*s.value_counts().to_dict(as_series=False).values(), strict=True))
    return [int(vc.get(v, 0)) for v in values]


# series length bands (nights / mean nights) for the trailing not-worn nights: long recordings
# end with long not-worn stretches far more often (device kept after the study period)
LENGTH_BANDS = (0.764, 0.955, 1.223)  # 20, 25 and 32 nights at the real mean of 26.17


def _empty_night_structure(per_night: pl.DataFrame) -> dict[str, object]:
    """Where nights without events sit: before the first labelled night, in runs between
    labelled nights, or after the last one (the device taken off before the recording ends)."""
    lead, trail, n_nights, mid, n_labelled_span, all_empty = [], [], [], [], 0, 0
    for _, g in per_night.sort("night").group_by("series_id", maintain_order=True):
        lab = (g["n"] > 0).to_numpy()
        if not lab.any():
            all_empty += 1
            continue
        first, last = np.flatnonzero(lab)[[0, -1]]
        lead.append(first)
        trail.append(len(lab) - 1 - last)
        n_nights.append(len(lab))
        inner = ~lab[first : last + 1]
        n_labelled_span += last + 1 - first
        edges = np.flatnonzero(np.diff(np.r_[0, inner.astype(np.int8), 0]))
        mid += list(edges[1::2] - edges[::2])
    lead_a, trail_a, mid_a = np.array(lead), np.array(trail), np.array(mid)
    nights = np.array(n_nights)
    band = np.digitize(nights / nights.mean(), LENGTH_BANDS)
    share = trail_a / nights
    long = band == len(LENGTH_BANDS)
    return {
        "share_series_all_empty": all_empty / per_night["series_id"].n_unique(),
        "p_leading_empty": float((lead_a > 0).mean()),
        "leading_len_mean_if_any": float(lead_a[lead_a > 0].mean()),
        "p_trailing_empty": float((trail_a > 0).mean()),
        "p_trailing_empty_by_length_band": [
            float((trail_a[band == b] > 0).mean()) for b in range(len(LENGTH_BANDS) + 1)
        ],
        "trailing_share_knots_if_any": np.quantile(share[trail_a > 0], np.linspace(0, 1, 11)),
        "trailing_share_knots_if_any_shorter": np.quantile(
            share[(trail_a > 0) & ~long], np.linspace(0, 1, 11)
        ),
        "trailing_share_knots_if_any_long": np.quantile(
            share[(trail_a > 0) & long], np.linspace(0, 1, 11)
        ),
        "middle_runs_per_night": len(mid_a) / n_labelled_span,
        "middle_run_len_mean": float(mid_a.mean()),
        "middle_run_len_counts": np.bincount(mid_a)[1:11].tolist(),
    }


def _mixed_model(t: pl.DataFrame) -> dict[str, object]:
    """onset = series mean + weekday shift + series sd * noise; sleep length = series mean +
    slope * (onset deviation) + series sd * noise. Between-series spreads are corrected for the
    noise in each series' mean."""
    out: dict[str, object] = {}
    t = t.with_columns(
        on_dev=pl.col("onset_h") - pl.col("onset_h").mean().over("series_id"),
    )
    wd = t.group_by("weekday").agg(pl.col("on_dev").mean()).sort("weekday")
    out["onset_weekday_shift"] = wd["on_dev"].to_numpy()  # Mon..Sun evenings
    t = t.with_columns(
        on_res=pl.col("on_dev")
        - pl.col("weekday").replace_strict(wd["weekday"].to_list(), wd["on_dev"].to_list())
    )
    x, y = (
        t["on_dev"].to_numpy(),
        (t["sleep_h"] - t.select(pl.col("sleep_h").mean().over("series_id"))["sleep_h"]).to_numpy(),
    )
    slope = float((x * y).sum() / (x * x).sum())
    out["sleep_slope_on_onset"] = slope
    t = t.with_columns(
        sl_res=pl.col("sleep_h")
        - pl.col("sleep_h").mean().over("series_id")
        - slope * pl.col("on_dev")
    )
    g = (
        t.group_by("series_id")
        .agg(
            n=pl.len(),
            on_mean=pl.col("onset_h").mean(),
            on_sd=pl.col("on_res").std(),
            sl_mean=pl.col("sleep_h").mean(),
            sl_sd=pl.col("sl_res").std(),
        )
        .filter(pl.col("n") >= 5)
    )
    n = g["n"].to_numpy()
    for name, mean_col, sd_col in (("onset", "on_mean", "on_sd"), ("sleep", "sl_mean", "sl_sd")):
        means, sds = g[mean_col].to_numpy(), g[sd_col].to_numpy()
        between = np.sqrt(max(means.var() - np.mean(sds**2 / n), 0.0))
        out[f"{name}_series_mean"] = float(means.mean())
        out[f"{name}_between_sd"] = float(between)
        out[f"{name}_within_sd_logmean"] = float(np.log(sds).mean())
        out[f"{name}_within_sd_logsd"] = float(np.log(sds).std())
        out[f"{name}_series_mean_skew"] = _skew(means)
    on_m, sl_m = g["on_mean"].to_numpy(), g["sl_mean"].to_numpy()
    out["sleep_mean_slope_on_onset_mean"] = float(np.polyfit(on_m, sl_m, 1)[0])
    for name, col in (("onset", "on_res"), ("sleep", "sl_res")):
        z = t[col].to_numpy()
        z = (z - z.mean()) / z.std()
        out[f"{name}_resid_skew"] = float((z**3).mean())
        out[f"{name}_resid_kurtosis"] = float((z**4).mean() - 3)
    return out


def _skew(x: np.ndarray) -> float:
    z = (x - x.mean()) / x.std()
    return float((z**3).mean())


# ---------------------------------------------------------------- signal


def state_masks(series: pl.DataFrame, events: pl.DataFrame) -> dict[str, np.ndarray]:
    """Boolean step masks: labelled sleep, and wake = from a wakeup to the next night's onset
    when both nights are labelled (so unlabelled, possibly not-worn stretches stay out)."""
    sid = series["series_id"][0]
    ev = events.filter((pl.col("series_id") == sid) & pl.col("step").is_not_null())
    w = ev.pivot(on="event", index="night", values="step").drop_nulls().sort("night")
    n = series.height
    step0 = int(series["step"][0])
    sleep = np.zeros(n, bool)
    wake = np.zeros(n, bool)
    nights, on, wk = (w[c].to_numpy() for c in ("night", "onset", "wakeup"))
    for i in range(len(w)):
        sleep[on[i] - step0 : wk[i] - step0] = True
        if i + 1 < len(w) and nights[i + 1] == nights[i] + 1:
            wake[wk[i] - step0 : on[i + 1] - step0] = True
    return {"sleep": sleep, "wake": wake}


def signal_stats(series: pl.DataFrame, events: pl.DataFrame) -> dict[str, dict[str, object]]:
    out = {}
    a = series["anglez"].to_numpy().astype(np.float64)
    m = series["enmo"].to_numpy().astype(np.float64)
    d = np.abs(np.diff(a, prepend=a[0]))
    for name, sel in state_masks(series, events).items():
        if sel.sum() < 720:  # under an hour: nothing to measure
            continue
        still = (d < 1.0) & sel
        edges = np.flatnonzero(np.diff(np.r_[0, still.astype(np.int8), 0]))
        runs = edges[1::2] - edges[::2]
        x = m[sel] - m[sel].mean()
        out[name] = {
            "steps": int(sel.sum()),
            "enmo_q": np.quantile(m[sel], [0.25, 0.5, 0.75, 0.9, 0.99]),
            "enmo_mean": float(m[sel].mean()),
            "enmo_zero": float((m[sel] == 0).mean()),
            "enmo_acf12": float((x[12:] * x[:-12]).mean() / x.var()),
            "dangle_q": np.quantile(d[sel], [0.25, 0.5, 0.75, 0.9, 0.99]),
            "still_share": float(still[sel].mean()),
            "still_run_q": np.quantile(runs, [0.5, 0.9, 0.99]) if len(runs) else np.zeros(3),
            "share_in_still_runs_5min": float(runs[runs >= 60].sum() / max(sel.sum(), 1)),
            "anglez_sd": float(a[sel].std()),
        }
    return out


def synthetic_signal_stats(folder: Path, max_series: int = 8) -> dict[str, dict[str, object]]:
    """The same signal statistics pooled over the first series of a generated folder."""
    events = read_events(folder / "train_events.csv")
    series = pl.read_parquet(folder / "train_series.parquet")
    pooled: dict[str, dict[str, list]] = {}
    for _, s in list(series.group_by("series_id", maintain_order=True))[:max_series]:
        st = signal_stats(s, events)
        for k, v in st.items():
            for kk, vv in v.items():
                pooled.setdefault(k, {}).setdefault(kk, []).append((st[k]["steps"], vv))
    out: dict[str, dict[str, object]] = {}
    for k, v in pooled.items():
        out[k] = {}
        for kk, pairs in v.items():
            w = np.array([p[0] for p in pairs], float)
            vals = np.array([p[1] for p in pairs], float)
            if kk == "steps":
                out[k][kk] = int(vals.sum())
            else:
                out[k][kk] = np.tensordot(w / w.sum(), vals, axes=1)
    return out


# ---------------------------------------------------------------- printing


def _fmt(v: object) -> str:
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v.item()
    if isinstance(v, np.ndarray | list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, float | np.floating):
        return f"{v:.4g}"
    return str(v)


def print_table(title: str, real: dict, synth: dict | None) -> None:
    print(f"\n## {title}\n")
    print("| statistic | real | synthetic |" if synth is not None else "| statistic | real |")
    print("| --- | --- | --- |" if synth is not None else "| --- | --- |")
    for k, v in real.items():
        row = f"| {k} | {_fmt(v)} |"
        if synth is not None:
            row += f" {_fmt(synth.get(k, ''))} |"
        print(row)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path, default=REAL, help="folder with the real sample")
    p.add_argument("--synthetic", type=Path, default=None, help="generated folder to compare")
    p.add_argument(
        "--plans",
        type=int,
        default=0,
        help="compare the labels of this many generated series (no signal; fast) instead",
    )
    p.add_argument("--days", type=float, default=26.7, help="with --plans: mean days")
    p.add_argument("--seed", type=int, default=0, help="with --plans: seed")
    args = p.parse_args()

    real_ev = read_events(args.real / "all_train_events.csv")
    syn_ev = None
    if args.plans:
        from sleepdetect.data.synthetic import synthetic_events

        syn_ev = synthetic_events(args.plans, args.days, args.seed).with_columns(
            local=pl.col("timestamp").str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S")
        )
    elif args.synthetic:
        syn_ev = read_events(args.synthetic / "train_events.csv")
    print_table("labels", label_stats(real_ev), label_stats(syn_ev) if syn_ev is not None else None)
    if args.plans:
        return

    series = pl.read_parquet(args.real / "train_series.parquet")
    real_sig = signal_stats(series, pl.read_csv(args.real / "train_events.csv"))
    syn_sig = synthetic_signal_stats(args.synthetic) if args.synthetic else None
    for state in real_sig:
        print_table(
            f"signal in {state}", real_sig[state], syn_sig[state] if syn_sig is not None else None
        )


if __name__ == "__main__":
    main()
