"""How real is the synthetic generator? An adversarial check and a picture.

A LightGBM classifier tells 30-min windows of the real series in ../shared/data/cmi from windows
of synthetic series (data/synthetic.py, the same number of worn windows), from statistics of
each window (enmo, arm angle, its changes, the local hour). Its AUC under cross-validation
(5 folds of whole days, so neighbouring windows never sit on both sides) is the realism figure:
0.5 is "cannot tell them apart", 1.0 "always can". Also per state (windows in labelled sleep,
in wake, and the 30 min after onsets and after wakeups), and the features that give the
synthetic data away (gain). The picture puts the real and synthetic distributions side by side.

    .venv/bin/python bench/realism.py [--series 24] [--picture docs/img/realism.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import lightgbm as lgb
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from sleepdetect.core.constants import STEPS_PER_DAY  # noqa: E402
from sleepdetect.data.features import not_worn_of  # noqa: E402
from sleepdetect.data.io import read_events, read_series  # noqa: E402
from sleepdetect.data.synthetic import write_synthetic  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmi"
WINDOW = 360  # 30 min of 5-s steps
STATES = ("sleep", "wake", "after onset", "after wakeup")


def windows(series: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """One row of statistics per worn 30-min window of each series (not a repeated day, not
    lying flat), with its state and day."""
    rows = []
    for part in series.partition_by("series_id", maintain_order=True):
        sid = part["series_id"][0]
        anglez = part["anglez"].to_numpy().astype(np.float64)
        enmo = part["enmo"].to_numpy().astype(np.float64)
        hour = part["seconds_of_day"].to_numpy() / 3600
        off = not_worn_of(part)
        state = np.full(len(part), "wake", dtype=object)
        mine = events.filter(pl.col("series_id") == sid).drop_nulls("step").sort("step")
        onsets = mine.filter(pl.col("event") == "onset")["step"].to_list()
        wakeups = mine.filter(pl.col("event") == "wakeup")["step"].to_list()
        for on, wk in zip(onsets, wakeups, strict=False):
            state[on:wk] = "sleep"
            state[on : on + WINDOW] = "after onset"
            state[wk : wk + WINDOW] = "after wakeup"
        for a in range(0, len(part) - WINDOW + 1, WINDOW):
            b = a + WINDOW
            if off[a:b].mean() > 0.1 or flat(anglez[a:b], enmo[a:b]):
                continue
            rows.append({"series_id": sid, "day": f"{sid}-{a // STEPS_PER_DAY}",
                         "state": state[a + WINDOW // 2],
                         **stats(anglez[a:b], enmo[a:b], hour[a])})  # fmt: skip
    return pl.DataFrame(rows)


def flat(anglez: np.ndarray, enmo: np.ndarray) -> bool:
    """A device lying off the wrist: the angle still and enmo zero (not a repeated day, so
    `not_worn_of` keeps it); left out on both sides, as the check is about worn behaviour."""
    return bool(anglez.std() < 0.5 and (enmo == 0).mean() > 0.9)


def stats(anglez: np.ndarray, enmo: np.ndarray, hour: float) -> dict[str, float]:
    d = np.abs(np.diff(anglez))
    q = np.quantile
    return {
        "enmo_mean": enmo.mean(),
        "enmo_std": enmo.std(),
        "enmo_q50": q(enmo, 0.5),
        "enmo_q90": q(enmo, 0.9),
        "enmo_zero_share": float((enmo == 0).mean()),
        "anglez_mean": anglez.mean(),
        "anglez_std": anglez.std(),
        "dangle_mean": d.mean(),
        "dangle_q50": q(d, 0.5),
        "dangle_q90": q(d, 0.9),
        "dangle_still_share": float((d < 0.1).mean()),
        "dangle_lag1": _lag1(np.diff(anglez)),
        "hour_sin": np.sin(2 * np.pi * hour / 24),
        "hour_cos": np.cos(2 * np.pi * hour / 24),
    }


def _lag1(x: np.ndarray) -> float:
    x = x - x.mean()
    denominator = float((x * x).sum())
    return float((x[1:] * x[:-1]).sum() / denominator) if denominator > 0 else 0.0


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve: the chance a real window scores above a synthetic one."""
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    for value in np.unique(p):  # ties share their mean rank
        tied = p == value
        ranks[tied] = ranks[tied].mean()
    pos = y == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def adversarial(table: pl.DataFrame, folds: int = 5) -> tuple[np.ndarray, dict[str, float]]:
    """Out-of-fold P(real) of every window, folds of whole days; and each feature's gain."""
    names = [c for c in table.columns if c not in ("series_id", "day", "state", "real")]
    x, y = table.select(names).to_numpy(), table["real"].to_numpy()
    days = table["day"].unique().sort().to_list()
    fold_of = {d: i % folds for i, d in enumerate(np.random.default_rng(0).permutation(days))}
    fold = np.array([fold_of[d] for d in table["day"]])
    oof, gain = np.zeros(len(y)), np.zeros(len(names))
    for k in range(folds):
        model = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.05, num_leaves=15,
                                   min_child_samples=10, verbose=-1, random_state=k)  # fmt: skip
        model.fit(x[fold != k], y[fold != k])
        oof[fold == k] = model.predict_proba(x[fold == k])[:, 1]
        gain += model.booster_.feature_importance("gain")
    shares = zip(names, gain / gain.sum(), strict=True)
    return oof, dict(sorted(shares, key=lambda kv: -kv[1]))


def picture(table: pl.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(2, 4, figsize=(14, 6))
    for col, state in enumerate(STATES):
        part = table.filter(pl.col("state") == state)
        for row, (feature, label) in enumerate(
            (("enmo_mean", "log10 mean enmo (g)"), ("dangle_mean", "log10 mean |d anglez| (deg)"))
        ):
            ax = axes[row, col]
            for real, color in ((1, "black"), (0, "tab:orange")):
                v = part.filter(pl.col("real") == real)[feature].to_numpy()
                v = np.log10(np.maximum(v, 1e-4))
                name = "real" if real else "synthetic"
                ax.hist(v, bins=30, density=True, histtype="step", color=color,
                        label=f"{name} ({len(v)})")  # fmt: skip
            ax.set_title(f"{state}", fontsize=9)
            ax.set_xlabel(label, fontsize=8)
            ax.legend(fontsize=7, frameon=False)
    fig.suptitle("30-min windows: real series (../shared) beside the synthetic generator")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=24, help="synthetic series to draw")
    parser.add_argument("--picture", default=None, help="where to write the PNG")
    args = parser.parse_args()
    if not (DATA / "train_series.parquet").is_file():
        sys.exit(f"{DATA}: the shared real series is not there")
    real = windows(read_series(DATA / "train_series.parquet"),
                   read_events(DATA / "train_events.csv")).with_columns(real=pl.lit(1))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic(tmp, n_series=args.series, days=8.0, seed=11)
        synthetic = windows(read_series(Path(tmp) / "train_series.parquet"),
                            read_events(Path(tmp) / "train_events.csv"))  # fmt: skip
    synthetic = synthetic.sample(min(len(synthetic), len(real)), seed=0)
    table = pl.concat([real, synthetic.with_columns(real=pl.lit(0))])
    oof, gain = adversarial(table)
    y = table["real"].to_numpy()
    result = {"windows": {"real": int(y.sum()), "synthetic": int((1 - y).sum())},
              "auc": auc(y, oof), "auc_by_state": {}, "gain": gain}  # fmt: skip
    print(f"adversarial AUC (5 folds of whole days): {result['auc']:.3f} (0.5: indistinguishable)")
    for state in STATES:
        mask = (table["state"] == state).to_numpy()
        if 0 < y[mask].sum() < mask.sum():
            result["auc_by_state"][state] = auc(y[mask], oof[mask])
            counts = f"{int(y[mask].sum())} real, {int((1 - y[mask]).sum())} synthetic windows"
            print(f"  {state:13} {result['auc_by_state'][state]:.3f}  ({counts})")
    print("features that give the synthetic data away (share of gain):")
    for name, share in list(gain.items())[:8]:
        print(f"  {name:20} {share:.3f}")
    if args.picture:
        picture(table, Path(args.picture))
        print(f"picture: {args.picture}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
