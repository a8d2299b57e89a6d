"""Benchmark: training (forward + loss + backward) and inference time per window, per model.

Every registered model at the reference shapes: 8 windows of 5760 steps (8 h) with 4 input
features, downsample 2, default components (CNNSpectrogram -> resnet34 Unet -> UNet1DDecoder
where a model takes them), random weights (encoder_weights=None). DayGRU runs at its own
downsample rate (12 steps = 1 minute), which is what it is built for. TransformerAutoModel is
skipped when the optional `transformers` package is absent. Runs on one CPU thread by default:
on a shared machine extra threads spin against other jobs and times swing tenfold (pass
--threads N on a machine of your own). Prints a table, then one JSON line.

    .venv/bin/python bench/models.py [--reps 2] [--batch 8] [--steps 5760] [--threads 1]
                                     [--only Spec2DCNN,DayGRU]
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sleepdetect.config import ModelConfig  # noqa: E402
from sleepdetect.models import MODELS, build_model  # noqa: E402
from sleepdetect.models.checks import example_batch, missing_requirement  # noqa: E402

IN_CHANNELS = 4
SEED = 0
# models whose reference shape differs from the Spec2DCNN setup
OWN_SETTINGS = {"DayGRU": {"downsample_rate": 12}}


def time_model(name: str, batch: int, steps: int, reps: int) -> dict[str, float | int | str]:
    torch.manual_seed(SEED)
    cfg = ModelConfig(name=name, **OWN_SETTINGS.get(name, {}))
    model = build_model(cfg, IN_CHANNELS)
    x, targets = example_batch(model, steps, batch=batch, in_channels=IN_CHANNELS, seed=SEED)

    def train_step() -> None:
        model.zero_grad(set_to_none=True)
        model.loss(model(x), targets).backward()

    model.train()
    warm_x, warm_t = example_batch(model, steps, batch=1, in_channels=IN_CHANNELS, seed=SEED)
    model.loss(model(warm_x), warm_t).backward()  # first-call allocations, not timed
    train = []
    for _ in range(reps):
        start = time.perf_counter()
        train_step()
        train.append(time.perf_counter() - start)
    model.eval()
    with torch.inference_mode():
        start = time.perf_counter()
        model.predict_scores(x)
        infer = time.perf_counter() - start
    takes = inspect.signature(type(model)).parameters
    parts = [
        cfg.feature_extractor if model.uses_feature_extractor else "",
        cfg.encoder_name if "encoder_name" in takes else "",
        cfg.decoder if model.uses_decoder else "",
    ]
    return {
        "components": "+".join(p for p in parts if p) or "-",
        "downsample_rate": cfg.downsample_rate,
        "params": sum(p.numel() for p in model.parameters()),
        "train_s_per_batch": min(train),
        "train_s_per_window": min(train) / batch,
        "infer_s_per_window": infer / batch,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2, help="timed training steps (best counts)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5760)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--only", default="", help="comma list of model names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.only.split(",") if args.only else MODELS.names()

    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    for name in names:
        missing = missing_requirement(MODELS.get(name))
        if missing:
            skipped[name] = f"needs the optional {missing!r} package"
            continue
        results[name] = time_model(name, args.batch, args.steps, args.reps)
        print(f"  {name}: {results[name]['train_s_per_batch']:.2f} s per batch", file=sys.stderr)

    header = [
        "model",
        "components",
        "rate",
        "params",
        "train s/batch",
        "train s/window",
        "infer s/window",
    ]
    rows = [header] + [
        [
            name,
            str(r["components"]),
            str(r["downsample_rate"]),
            f"{r['params']:,}",
            f"{r['train_s_per_batch']:.2f}",
            f"{r['train_s_per_window']:.3f}",
            f"{r['infer_s_per_window']:.3f}",
        ]
        for name, r in results.items()
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    print(
        f"models on CPU ({torch.get_num_threads()} threads): batch {args.batch} x "
        f"{IN_CHANNELS} features x {args.steps} steps, best of {args.reps} training steps"
    )
    for i, row in enumerate(rows):
        print(
            "  ".join(
                c.rjust(w) if j > 1 else c.ljust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    summary = {
        "bench": "models",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "steps": args.steps,
        "features": IN_CHANNELS,
        "reps": args.reps,
        "results": {
            name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
            for name, r in results.items()
        },
        "skipped": skipped,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
