"""Benchmark training on CPU: windows per second of the data pipeline, steps per second of the
model step for the demo.yaml and exp001.yaml shapes.

    python bench/train.py

Prints a table, then one JSON line with the figures. Target: the data pipeline alone delivers
>= 1000 windows/s per core at 5760-step windows with 10 features.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader

from sleepdetect.config import load_config
from sleepdetect.data.prepare import Manifest, prepare
from sleepdetect.data.windows import SeriesLabels, WindowDataset, WindowSampler, split_segments
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
    root = cfg.exp_dir / "prepared" / "train"
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


def main() -> None:
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
    print(json.dumps({"pipeline_windows_per_s": wps, "threads": threads, "train": rows}))


if __name__ == "__main__":
    main()
