"""Benchmark: nested out-of-fold scores of trained experiments under post-processing variants.

For each experiment folder given (trained with every fold, e.g. `python -m sleepdetect run
params/real-sample.yaml exp_name=NAME --only prepare,train`), runs the nested search of `tune`
(nothing is chosen on the nights that score it) with the default `tune.grid` (whatever grid
the experiment ran with), with peak finding instead of mass candidates, with both (312
settings), without the series-edge options, and with one day start for both events (no
`day_start_hour_wakeup`: the 1st place's per-event boundaries); on the default grid also with
the second stage (needs lightgbm). Prints a table (nested score, onset, wakeup, 95 % bootstrap
interval over nights, the pooled figure, with the second stage, training wall time of the
folds), then one JSON line.

    .venv/bin/python bench/cv.py outputs/e1-real outputs/e2-pretrained
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sleepdetect.config import TuneConfig, load_config  # noqa: E402
from sleepdetect.cv.oof import read_oof  # noqa: E402
from sleepdetect.cv.tune import run_tune  # noqa: E402
from sleepdetect.data.prepare import Manifest  # noqa: E402
from sleepdetect.experiment import Experiment  # noqa: E402

# the peak-finding options crossed with the day options: 288 settings, 312 with tune.grid's mass
PEAKS = {
    "method": ["peaks"],
    "distance": [72, 240, 480],
    "peak_offsets": [[], [-120, -36, 36, 120]],
    "minute_snap": [False, True],
    "day_norm": ["none", "max", "sum"],
    "day_start_hour": [12, 5],
    "day_start_hour_wakeup": [None, 0],
    "suppress_repeated": [False, True],
}
EDGES = ("edge_decay_hours", "start_wakeup_factor")


def variants(grid: dict) -> dict[str, dict]:
    """tune.grid (mass candidates), peaks instead, both (the 312-setting search), tune.grid
    without the series-edge options, and without the wakeups' own day start (the 1st place's
    per-event day boundaries)."""
    return {
        "tune.grid": grid,
        "peaks": PEAKS,
        "peaks + mass": {**PEAKS, "method": ["peaks", "mass"]},
        "no edges": {k: v for k, v in grid.items() if k not in EDGES},
        "one day start": {k: v for k, v in grid.items() if k != "day_start_hour_wakeup"},
    }


def training_minutes(exp: Path) -> float:
    """Wall time of the train stage: first fold config written to last model.pt written."""
    folds = Experiment(exp).bundles()
    start = min((f / "config.yaml").stat().st_mtime for f in folds)
    # a fold folder's log starts when its training does; model.pt is its last file
    start = min([start, *((f / "log").stat().st_mtime for f in folds if (f / "log").exists())])
    end = max((f / "model.pt").stat().st_mtime for f in folds)
    return (end - start) / 60


def main(paths: list[str]) -> None:
    rows = []
    for path in paths:
        exp = Path(path)
        cfg = load_config(exp / "config.yaml")
        manifest = Manifest.load(Experiment(exp).prepared("train"))
        oof = read_oof(exp)
        for name, grid in variants(TuneConfig().grid).items():
            start = time.perf_counter()
            r = run_tune(
                oof,
                manifest,
                cfg.postprocess,
                grid,
                cfg.tune.bootstrap,
                cfg.seed,
                stage2=name == "tune.grid",
            )
            per_event = dict(r.table.group_by("event").agg(pl.col("ap").mean()).iter_rows())
            rows.append(
                {
                    "experiment": exp.name,
                    "post-processing": name,
                    "nested": r.nested_score,
                    "onset": per_event.get("onset"),
                    "wakeup": per_event.get("wakeup"),
                    "interval": [round(x, 4) for x in r.interval],
                    "pooled": r.pooled_score,
                    "stage2": r.stage2_score,
                    "train_min": training_minutes(exp),
                    "tune_s": time.perf_counter() - start,
                }
            )
    print(
        f"{'experiment':<22} {'post-processing':<15} nested  onset   wakeup  95 % interval"
        "  pooled  +stage2  train min  tune s"
    )
    for r in rows:
        lo, hi = r["interval"]
        stage2 = "-" if r["stage2"] is None else f"{r['stage2']:.4f}"
        print(
            f"{r['experiment']:<22} {r['post-processing']:<15} {r['nested']:.4f}  "
            f"{r['onset']:.4f}  {r['wakeup']:.4f}  {lo:.3f}-{hi:.3f}    {r['pooled']:.4f}  "
            f"{stage2:>7}  {r['train_min']:9.1f}  {r['tune_s']:6.1f}"
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
