"""One-script GPU check: training steps/s and peak GPU memory of the reference setup in fp32 and
bf16-mixed, whether the data loader keeps the GPU busy, CenterNet and DayGRU steps/s, inference
steps/s at the configured overlap with the projected time for the hidden test set, and DDP.

    python bench/gpu.py           # on a GPU machine: at most 8 minutes
    python bench/gpu.py --tiny    # the same code paths on CPU with tiny shapes, under a minute

Every training row runs 02_train's own code (`training.train`, Lightning, the real sampler,
dataset and data-loader workers) for one epoch of a fixed number of steps, without validation,
on synthetic data prepared into bench/.cache; bench/scale.py's StepTimer times each step after
the device finished it, and the wait for each batch. Inference loads the exp001 bundle just
trained and predicts one long series with `inference.predict_series`. The 2-process DDP run
needs two GPUs (with --tiny: two CPU processes). Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace

import numpy as np
import torch

from infer import HIDDEN_TEST_STEPS, KAGGLE_LIMIT_H
from scale import CACHE, REPO, StepTimer, synthetic_data
from sleepdetect.config import load_config
from sleepdetect.data.prepare import prepare
from sleepdetect.inference.bundles import load_bundle
from sleepdetect.inference.predict import predict_series
from sleepdetect.training.fold import train

FOLDS = 5

# (row name, params file, overrides, precision)
ROWS = [
    ("exp001 Spec2DCNN fp32", "exp001.yaml", [], "32"),
    ("exp001 Spec2DCNN bf16", "exp001.yaml", [], "bf16-mixed"),
    ("CenterNet bf16", "exp001.yaml", ["model.name=CenterNet"], "bf16-mixed"),
    ("DayGRU bf16", "demo.yaml", [], "bf16-mixed"),
]

# --tiny: the exp001 shapes cut down until each step takes a fraction of a second on a CPU
TINY = {
    "exp001.yaml": [
        "model.encoder_name=resnet18",
        "model.params={encoder_depth: 3}",
        "windows.length=1152",
        "windows.valid_stride=576",
        "trainer.batch_size=2",
    ],
    "demo.yaml": ["windows.length=2880", "windows.valid_stride=1440", "trainer.batch_size=2"],
}


def settings(tiny: bool) -> dict:
    if tiny:
        return {
            "series": 3, "days": 4.0, "steps": 4, "accelerator": "cpu", "workers": 1,
            "infer_steps": 20_000, "folds": 3,
        }  # fmt: skip
    return {
        "series": 24, "days": 27.0, "steps": 60, "accelerator": "gpu", "workers": 4,
        "infer_steps": 2_000_000, "folds": 5,
    }  # fmt: skip


def config(params: str, out, s: dict, tiny: bool, *overrides: str):
    data = synthetic_data(s["series"], s["days"])
    return load_config(
        REPO / "params" / params,
        [
            f"data.dir={data}",
            f"output.dir={out}",
            "split.kind=series",
            f"split.n_folds={s['folds']}",
            "split.fold=0",
            "trainer.checkpoint=last",  # no validation: training steps only
            "trainer.max_epochs=1",
            "trainer.max_minutes=0",
            f"trainer.accelerator={s['accelerator']}",
            f"trainer.num_workers={s['workers']}",
            *(TINY[params] if tiny else []),
            *overrides,
        ],
    )


def train_row(name: str, params: str, extra: list[str], precision: str, s: dict, tiny: bool):
    out = CACHE / ("gpu-tiny" if tiny else "gpu") / name.replace(" ", "-")
    shutil.rmtree(out, ignore_errors=True)
    cfg = config(
        params, out, s, tiny, *extra, f"trainer.precision={precision}", "trainer.devices=1"
    )
    per_epoch = cfg.trainer.batch_size * s["steps"]
    cfg = replace(cfg, windows=replace(cfg.windows, per_epoch=per_epoch))
    prepare(cfg)
    timer = StepTimer()
    fold = train(cfg, callbacks=[timer])
    f = timer.figures(skip=max(1, s["steps"] // 6))  # the first steps warm up
    return {
        "name": name,
        "model": cfg.model.name,
        "precision": precision,
        "batch": cfg.trainer.batch_size,
        "window": cfg.windows.length,
        "workers": cfg.trainer.num_workers,
        **f,
        "bundle": str(fold),
    }


def infer_row(bundle: str, n_steps: int, device: torch.device) -> dict:
    b = load_bundle(bundle, device)
    w = b.config.windows
    features = np.random.default_rng(0).standard_normal((n_steps, len(b.config.prepare.features)))
    features = features.astype(np.float32)
    stride = b.config.infer.stride or w.valid_stride
    predict_series(b.model, features[: 2 * w.length], w.length, stride, 32, device)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    predict_series(b.model, features, w.length, stride, b.config.infer.batch_size, device)
    seconds = time.perf_counter() - start
    steps_per_s = n_steps / seconds
    one = HIDDEN_TEST_STEPS / steps_per_s / 3600
    return {
        "model": b.config.model.name,
        "window": w.length,
        "stride": stride,
        "steps_per_s": steps_per_s,
        "projected_h_one_model": one,
        f"projected_h_{FOLDS}_folds": FOLDS * one,
    }


def ddp_row(s: dict, tiny: bool) -> dict | None:
    """A 2-process DDP run of a few steps with validation gathered across ranks; on a GPU
    machine only when two GPUs are visible."""
    if not tiny and torch.cuda.device_count() < 2:
        return None
    out = CACHE / ("gpu-tiny" if tiny else "gpu") / "ddp"
    shutil.rmtree(out, ignore_errors=True)
    cfg = config(
        "exp001.yaml",
        out,
        s,
        tiny,
        "trainer.devices=2",
        "trainer.strategy=ddp_spawn",  # ddp_fork hangs on CPU once torch has run here
        "trainer.checkpoint=best",  # validates, so the ranks gather their candidates
        f"windows.per_epoch={2 * s['steps'] * (2 if tiny else 32)}",
    )
    prepare(cfg)
    start = time.perf_counter()
    fold = train(cfg)
    return {"processes": 2, "wall_s": time.perf_counter() - start, "bundle": str(fold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU")
    args = parser.parse_args()
    s = settings(args.tiny)
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("bench/gpu.py: no CUDA device visible; on a CPU run --tiny")
    device = torch.device("cpu" if args.tiny else "cuda")
    name = "CPU (--tiny)" if args.tiny else torch.cuda.get_device_name(0)
    started = time.perf_counter()

    rows = [train_row(*row, s, args.tiny) for row in ROWS]
    inference = infer_row(rows[1]["bundle"], s["infer_steps"], device)  # exp001, trained in bf16
    ddp = ddp_row(s, args.tiny)

    print(f"\n{name}: training, one epoch of {s['steps']} steps (02_train's code)")
    print(
        f"{'row':<24} {'batch':>5} {'window':>6} {'steps/s':>8} {'windows/s':>9} "
        f"{'waiting':>8} {'peak GPU GB':>11}"
    )
    for r in rows:
        gb = f"{r['peak_gpu_gb']:.2f}" if r["peak_gpu_gb"] is not None else "-"
        print(
            f"{r['name']:<24} {r['batch']:>5} {r['window']:>6} {r['steps_per_s']:>8.2f} "
            f"{r['steps_per_s'] * r['batch']:>9.1f} {r['wait_share']:>7.1%} {gb:>11}"
        )
    print("waiting: share of step time spent waiting for the next batch (data loader)")
    i = inference
    print(
        f"\ninference ({i['model']}, window {i['window']}, stride {i['stride']}): "
        f"{i['steps_per_s']:,.0f} steps/s; hidden test (200 x 460k steps): "
        f"{i['projected_h_one_model']:.2f} h one model, {i[f'projected_h_{FOLDS}_folds']:.2f} h "
        f"{FOLDS} folds (Kaggle's limit: {KAGGLE_LIMIT_H:.0f} h)"
    )
    if ddp:
        print(f"DDP, 2 processes: one epoch with validation in {ddp['wall_s']:.1f} s")
    else:
        print("DDP: skipped (fewer than 2 GPUs visible)")
    total = time.perf_counter() - started
    print(f"total {total:.0f} s")
    print(
        json.dumps(
            {
                "device": name,
                "tiny": args.tiny,
                "train": rows,
                "infer": inference,
                "ddp": ddp,
                "total_s": total,
            }  # fmt: skip
        )
    )


if __name__ == "__main__":
    main()
