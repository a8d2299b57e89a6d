"""The synthetic-only model, nested on the real nights of ../shared/data/cmi.

A model trained on synthetic series only (default: the shipped one) never saw these nights, so
its scores of them are out of fold by construction. This scores them the way the real recipe's
OOF predictions are scored: the recipe's folds (params/real-sample.yaml: 5 blocks of 2
contiguous nights), post-processing chosen for each fold on the other four (the nested search
of `tune`, the recipe's grid). The figure is comparable with the recipe's nested score, and it
is what a generator change must not lower.

    .venv/bin/python bench/synth_only.py [BUNDLE ...] [--out outputs/synth-only]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from sleepdetect.config import Config, load_config
from sleepdetect.cv.tune import run_tune
from sleepdetect.data.prepare import Manifest, open_prepared
from sleepdetect.data.windows import series_labels, split_segments
from sleepdetect.inference.bundles import same_features
from sleepdetect.inference.ensemble import ensemble_scores
from sleepdetect.stages.predict import load_model

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cmi"
RECIPE = REPO / "params" / "real-sample.yaml"


def oof_of_bundles(bundles: list[str], out: str) -> tuple[pl.DataFrame, Manifest, Config]:
    """The bundles' mean scores of every step the recipe's folds validate, with the fold that
    validates it; the prepared real series; the recipe's config."""
    loaded = [b for name in bundles for b in load_model(name)[1]]
    same_features(loaded)
    cfg = load_config(RECIPE, ["exp_name=synth-only", f"output.dir={out}"])
    features = loaded[0].config.prepare.features  # the bundles' own, not the recipe's
    cfg = replace(cfg, data=replace(cfg.data, dir=str(DATA)),
                  prepare=replace(cfg.prepare, features=features))  # fmt: skip
    manifest = open_prepared(cfg, on_stale="prepare")
    events = manifest.read_events()
    labels = series_labels(manifest, events)
    batch = cfg.infer.batch_size
    ones = [1.0] * len(loaded)
    scores = {
        sid: ensemble_scores(loaded, ones, manifest.features(sid), None, batch, "cpu")
        for sid in manifest.lengths
    }
    parts = []
    for fold in range(cfg.split.n_folds):
        _, valid = split_segments(manifest, labels, cfg.split.kind, cfg.split.n_folds, fold,
                                  cfg.split.valid_fraction, cfg.seed, events=events,
                                  margin=cfg.split.margin)  # fmt: skip
        for seg in valid:
            s = scores[seg.series_id][seg.start : seg.end]
            parts.append(pl.DataFrame({
                "series_id": seg.series_id, "step": np.arange(seg.start, seg.end, dtype=np.int64),
                "onset": s[:, 0], "wakeup": s[:, 1], "fold": fold}))  # fmt: skip
    return pl.concat(parts).sort("series_id", "step"), manifest, cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", default=["shipped:day_gru_synth"],
                        help="bundle or ensemble folders (or shipped:NAME), averaged")  # fmt: skip
    parser.add_argument("--out", default="outputs", help="where the real series is prepared")
    args = parser.parse_args()
    if not (DATA / "train_series.parquet").is_file():
        sys.exit(f"{DATA}: the shared real series is not there")
    start = time.perf_counter()
    oof, manifest, cfg = oof_of_bundles(args.bundles, args.out)
    r = run_tune(oof, manifest, cfg.postprocess, cfg.tune.grid, cfg.tune.bootstrap, cfg.seed)
    per_event = dict(r.table.group_by("event").agg(pl.col("ap").mean()).iter_rows())
    result = {"bundles": args.bundles, "nested": r.nested_score, "onset": per_event["onset"],
              "wakeup": per_event["wakeup"], "interval": [round(x, 4) for x in r.interval],
              "pooled": r.pooled_score, "seconds": time.perf_counter() - start}  # fmt: skip
    lo, hi = result["interval"]
    print("bundles                         nested  onset   wakeup  95 % interval  pooled")
    print(f"{' + '.join(args.bundles)[:30]:<30}  {r.nested_score:.4f}  {result['onset']:.4f}  "
          f"{result['wakeup']:.4f}  {lo:.3f}-{hi:.3f}    {r.pooled_score:.4f}")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
