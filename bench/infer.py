"""Benchmark inference on CPU: steps per second of whole-series prediction with the configured
overlap, and the projected time for the hidden test set next to Kaggle's 9-hour limit; with
--full, 03_infer of all 277 synthetic series (competition scale) with its peak memory.

    python bench/infer.py [--steps 100000] [--full]

Models are built from the params files with random weights (speed does not depend on them).
Prints a table, then one JSON line with the figures. Target: exp001 projected under 4 h here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from scale import make_ready, measure_infer, memory_line
from sleepdetect.config import load_config
from sleepdetect.inference.predict import predict_series
from sleepdetect.models import build_model

REPO = Path(__file__).resolve().parents[1]
HIDDEN_TEST_STEPS = 200 * 460_000  # about 200 series of about 460k steps
KAGGLE_LIMIT_H = 9.0


def measure(params: str, n_steps: int) -> dict:
    cfg = load_config(REPO / "params" / params)
    torch.manual_seed(0)
    model = build_model(cfg.model, in_channels=len(cfg.prepare.features)).eval()
    x = np.random.default_rng(0).standard_normal((n_steps, len(cfg.prepare.features)))
    x = x.astype(np.float32)
    stride = cfg.infer.stride or cfg.windows.valid_stride
    predict_series(model, x[: cfg.windows.length], cfg.windows.length, stride)  # warm-up
    start = time.perf_counter()
    predict_series(model, x, cfg.windows.length, stride, batch_size=cfg.infer.batch_size)
    seconds = time.perf_counter() - start
    steps_per_s = n_steps / seconds
    return {
        "params": params,
        "model": cfg.model.name,
        "window": cfg.windows.length,
        "stride": stride,
        "steps_per_s": steps_per_s,
        "projected_h": HIDDEN_TEST_STEPS / steps_per_s / 3600,
    }


def full_scale(n_series: int = 277) -> dict:
    """03_infer of `n_series` series with a demo.yaml DayGRU trained on them (bench/train.py
    --full's fold, trained first unless bench/.cache holds it), scored against their labels."""
    make_ready(n_series, trained=True)
    row = measure_infer(n_series)
    print(
        f"\nfull scale: 03_infer of {row['series']} series, {row['steps'] / 1e6:.1f}M steps, "
        f"demo.yaml DayGRU: {row['wall_s']:.0f} s ({row['steps'] / row['wall_s']:,.0f} steps/s "
        f"with post-processing, submission and scoring)\n  {memory_line(row)}"
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="length of the test series")
    parser.add_argument("--full", action="store_true", help="also 03_infer at full scale")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    rows = [measure("demo.yaml", args.steps), measure("exp001.yaml", args.steps)]
    print(f"\ninference on CPU ({threads} threads), one model, hidden test = 200 x 460k steps")
    print(
        f"{'params':<12} {'model':<10} {'window':>6} {'stride':>6} {'steps/s':>10} "
        f"{'projected':>10} {'Kaggle limit':>12}"
    )
    for r in rows:
        print(
            f"{r['params']:<12} {r['model']:<10} {r['window']:>6} {r['stride']:>6} "
            f"{r['steps_per_s']:>10,.0f} {r['projected_h']:>9.2f}h {KAGGLE_LIMIT_H:>11.1f}h"
        )
    full = full_scale() if args.full else None
    figures = {"threads": threads, "hidden_test_steps": HIDDEN_TEST_STEPS, "rows": rows}
    print(json.dumps(figures | {"full_scale": full}))


if __name__ == "__main__":
    main()
