"""`python -m sleepdetect models`: what a user can predict with, listed: the registered models
with their feature extractors and decoders, and the baselines that need no training."""

from __future__ import annotations

from typing import Any

import torch

from sleepdetect.baselines.hdcza import BASELINES
from sleepdetect.config import ModelConfig
from sleepdetect.models.base import SleepModel
from sleepdetect.models.build import build_model
from sleepdetect.models.checks import missing_requirement, run_check, valid_combinations
from sleepdetect.models.registries import DECODERS, FEATURE_EXTRACTORS, MODELS


def _n_params(module: Any) -> str:
    return f"{sum(p.numel() for p in module.parameters()):,}"


def _needs(model_cls: type[SleepModel]) -> str:
    parts = [
        p
        for p, used in (
            ("feature_extractor", model_cls.uses_feature_extractor),
            ("decoder", model_cls.uses_decoder),
        )
        if used
    ]
    return " + ".join(parts) or "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def models_command(check: bool = False) -> int:
    """List every registered component with its parameter count at default arguments (4 input
    features, downsample 2) and, for models, the targets it trains on; then the baselines,
    which predict without training. `check`: build each valid
    combination small, run forward + loss + backward on 777 steps and print how it went."""
    fe_rows = [["feature extractor", "params (4 features)", "image (chans x height)"]]
    for name in FEATURE_EXTRACTORS.names():
        fe = FEATURE_EXTRACTORS.build(name, in_channels=4, downsample_rate=2)
        fe_rows.append([name, _n_params(fe), f"{fe.out_chans} x {fe.height}"])
    dec_rows = [["decoder", "params (64 ch -> 3)"]]
    for name in DECODERS.names():
        dec_rows.append([name, _n_params(DECODERS.build(name, n_channels=64, n_classes=3))])
    model_rows = [["model", "params (defaults)", "targets", "takes"]]
    for name in MODELS.names():
        cls = MODELS.get(name)
        missing = missing_requirement(cls)
        params = (
            f"needs {missing}" if missing else _n_params(build_model(ModelConfig(name=name), 4))
        )
        model_rows.append([name, params, cls.target_kind, _needs(cls)])
    baseline_rows = [["baseline (infer.baseline, no training)", "reads features", "about"]]
    for name in BASELINES.names():
        cls = BASELINES.get(name)
        baseline_rows.append([name, ", ".join(cls.features), cls.summary])
    tables = (model_rows, baseline_rows, fe_rows, dec_rows)
    print(*(_table(rows) for rows in tables), sep="\n\n")
    if not check:
        return 0

    print("\ncheck: each combination built small, forward + loss + backward on (2, 4, 777)")
    torch.set_num_threads(1)  # tiny builds gain nothing from threads; on busy CPUs they spin
    rows = [["combination", "params", "result", "seconds"]]
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    for combo in valid_combinations():
        r = run_check(combo)
        if r.skipped:
            result, counts["skipped"] = f"skipped ({r.skipped})", counts["skipped"] + 1
        elif r.error:
            result, counts["failed"] = f"FAILED: {r.error}", counts["failed"] + 1
        else:
            result, counts["ok"] = "ok", counts["ok"] + 1
        rows.append([combo.id, r.params, result, f"{r.seconds:.2f}"])
    print(_table(rows))
    print("\n" + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 1 if counts["failed"] else 0
