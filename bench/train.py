"""Benchmark training on CPU: windows per second of the data pipeline, steps per second of the
model step for the demo.yaml and exp001.yaml shapes, and with --full one epoch of 02_train at
competition scale.

    python bench/train.py [--full]

Prints a table, then one JSON line with the figures. Targets: the data pipeline alone delivers
>= 1000 windows/s per core at 5760-step windows with 10 features; at full scale (demo.yaml's
DayGRU on 277 synthetic series, 2 data-loader workers) the run and its workers peak at <= 4 GB,
the memory-mapped arrays shared, not copied (bench/scale.py says how memory is counted).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader

from scale import make_ready, measure_train, memory_line, prepared_gb, windows_per_s
from sleepdetect.config import load_config
from sleepdetect.data.prepare import Manifest, prepare
from sleepdetect.data.windows import SeriesLabels, WindowDataset, WindowSampler, split_segments
from sleepdetect.experiment import Experiment
from sleepdetect.models import build_model

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TEN_FEATURES = (
    "[anglez, enmo, hour_sin, hour_cos, anglez_diff, enmo_mean_12, enmo_std_60, enmo_max_60, "
    "anglez_absdiff_mean_60, anglez_absdiff_std_60]"
)


def pipeline_windows_per_second(n_windows: int = 4000, length: int = 5760) -> float:
    """Windows/s of sampler + dataset (memory-mapped slices + targets) + collate, one process."""
    cache = HERE / ".cache" / "train-bench"
    cfg = load_config(
        None,
        [
            f"data.dir={cache / 'data'}",
            f"output.dir={cache / 'out'}",
            f"prepare.features={TEN_FEATURES}",
        ],
    )
    root = Experiment.of(cfg).prepared("train")
    if not (root / "manifest.json").is_file():
        prepare(cfg)
    m = Manifest.load(root)
    events = m.read_events()
    ids = [s.series_id for s in m.series]
    labels = {s: SeriesLabels.from_events(events.filter(pl.col("series_id") == s)) for s in ids}
    train, _ = split_segments(m, labels, "series", 4, 0, 0.3, seed=0)
    sampler = WindowSampler(
        train, {s: i for i, s in enumerate(ids)}, labels, length, n_windows, 0.5, seed=0
    )
    ds = WindowDataset(
        [m.features(s) for s in ids], [labels[s] for s in ids], length, "segmentation", 2, 10.0
    )
    loader = DataLoader(ds, batch_size=32, sampler=sampler, num_workers=0)
    start = time.perf_counter()
    n = sum(len(x) for x, _ in loader)
    return n / (time.perf_counter() - start)


def steps_per_second(params: str, n_steps: int = 3) -> dict:
    """Forward + backward + AdamW step on a random batch of the params file's shapes."""
    cfg = load_config(REPO / "params" / params)
    model = build_model(cfg.model, in_channels=len(cfg.prepare.features))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(cfg.trainer.batch_size, len(cfg.prepare.features), cfg.windows.length)
    targets = {
        "labels": torch.rand(
            cfg.trainer.batch_size, -(-cfg.windows.length // model.downsample_rate), 3
        )
    }
    times = []
    for _ in range(n_steps + 1):
        start = time.perf_counter()
        loss = model.loss(model(x), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    sec = float(np.median(times[1:]))
    return {
        "params": params,
        "model": cfg.model.name,
        "batch": cfg.trainer.batch_size,
        "window": cfg.windows.length,
        "steps_per_s": 1 / sec,
        "windows_per_s": cfg.trainer.batch_size / sec,
    }


def full_scale(n_series: int = 277) -> dict:
    """One epoch of fold 0 on `n_series` series (bench/scale.py's measure_train), prepared
    first unless bench/.cache holds it."""
    make_ready(n_series)
    row = measure_train(n_series)
    n_valid = n_series // 5
    print(
        f"\nfull scale: {n_series} synthetic series, demo.yaml DayGRU, 2 data-loader workers, "
        f"one epoch of {row['epoch_windows']} windows\n"
        f"  training {row['epoch_train_s']:.1f} s ({windows_per_s(row):.1f} windows/s), "
        f"validating {n_valid} whole series {row['epoch_valid_s']:.1f} s\n"
        f"  {memory_line(row)}\n"
        f"  the prepared arrays are {prepared_gb(n_series):.2f} GB on disk"
    )
    return row | {"series": n_series, "windows_per_s": windows_per_s(row)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also one epoch at full scale")
    args = parser.parse_args()
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    wps = pipeline_windows_per_second()
    rows = [steps_per_second("demo.yaml"), steps_per_second("exp001.yaml")]
    print(f"\ndata pipeline (5760-step windows, 10 features, 1 process): {wps:,.0f} windows/s")
    print(f"\ntraining step on CPU ({threads} threads)")
    print(
        f"{'params':<12} {'model':<10} {'batch':>5} {'window':>6} {'steps/s':>8} {'windows/s':>9}"
    )
    for r in rows:
        print(
            f"{r['params']:<12} {r['model']:<10} {r['batch']:>5} {r['window']:>6} "
            f"{r['steps_per_s']:>8.3f} {r['windows_per_s']:>9.2f}"
        )
    full = full_scale() if args.full else None
    print(
        json.dumps(
            {"pipeline_windows_per_s": wps, "threads": threads, "train": rows, "full_scale": full}
        )
    )


if __name__ == "__main__":
    main()
