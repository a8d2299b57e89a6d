"""Out-of-fold (OOF) predictions: every validated step scored by the fold model that never
trained on it, gathered over the folds of an experiment, and their score.

Requires: the fold folders of 02_train (`<exp>/fold<k>/oof.parquet`, `model.pt`).
Outputs, under `<output.dir>/<exp_name>/`:
  oof.parquet       series_id, step, onset, wakeup, fold
  oof.json          the folds and the sha256 of each fold's model.pt (readers check it)
  oof_metrics.csv   AP of every event x tolerance of the pooled OOF candidates, and the score
This module imports no Lightning: `tune` and the notebooks read OOF files through it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl

from sleepdetect.candidates import predict_candidates
from sleepdetect.config import Config, PostprocessConfig
from sleepdetect.constants import EVENTS
from sleepdetect.data.prepare import Manifest
from sleepdetect.data.windows import fold_count
from sleepdetect.errors import InputError
from sleepdetect.files import atomic_path, write_json
from sleepdetect.metric import event_detection_ap_table, write_metrics

OOF_FILE = "oof.parquet"
RECORD_FILE = "oof.json"


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def trained_folds(cfg: Config) -> list[int]:
    """The folds 02_train trains: `split.fold`, or every fold when it is None."""
    n = fold_count(cfg.split.kind, cfg.split.n_folds)
    return list(range(n)) if cfg.split.fold is None else [cfg.split.fold]


def gather_oof(cfg: Config) -> Path:
    """Concatenate the folds' OOF scores, score their candidates (the postprocess section),
    print the score with onset and wakeup apart, and record which bundles made them."""
    exp = cfg.exp_dir
    frames, record = [], {}
    for fold in trained_folds(cfg):
        fold_dir = exp / f"fold{fold}"
        for name in ("oof.parquet", "model.pt"):
            if not (fold_dir / name).is_file():
                raise InputError(f"{fold_dir}: no {name}; train fold {fold} first (02_train)")
        frames.append(
            pl.read_parquet(fold_dir / "oof.parquet").with_columns(fold=pl.lit(fold, pl.Int64))
        )
        record[str(fold)] = file_hash(fold_dir / "model.pt")
    oof = pl.concat(frames).sort("series_id", "step")
    with atomic_path(exp / OOF_FILE) as tmp:
        oof.write_parquet(tmp)
    write_json(exp / RECORD_FILE, {"folds": record})

    manifest = Manifest.load(exp / "prepared" / "train")
    solution = manifest.read_events().filter(pl.col("step").is_not_null())
    candidates = oof_candidates(oof, manifest, cfg.postprocess)
    table, score = event_detection_ap_table(solution_of(oof, solution), candidates)
    write_metrics(table, score, exp / "oof_metrics.csv")
    print(format_score(table, score, f"OOF over {len(record)} fold(s)"))
    return exp / OOF_FILE


def read_oof(exp_dir: Path) -> pl.DataFrame:
    """`<exp>/oof.parquet`, checked against the bundles that made it: a fold retrained since
    (its model.pt changed) makes the file stale, and reading it is an error."""
    path, record_path = exp_dir / OOF_FILE, exp_dir / RECORD_FILE
    if not path.is_file() or not record_path.is_file():
        raise InputError(
            f"{exp_dir}: no {OOF_FILE}; train every fold first (02_train with split.fold: null)"
        )
    for fold, digest in json.loads(record_path.read_text())["folds"].items():
        model = exp_dir / f"fold{fold}" / "model.pt"
        if not model.is_file() or file_hash(model) != digest:
            raise InputError(
                f"{path} is stale: {model} changed since it was gathered; run 02_train again "
                "(it gathers the OOF predictions of the current folds)"
            )
    return pl.read_parquet(path)


def _per_step(
    oof: pl.DataFrame, manifest: Manifest, columns: tuple[str, ...], fill: float, dtype: type
) -> dict[str, np.ndarray]:
    """One (steps, len(columns)) array per series of `oof`'s columns, `fill` where a step has
    no row."""
    out = {}
    for (sid,), part in oof.group_by(["series_id"], maintain_order=True):
        array = np.full((manifest.lengths[str(sid)], len(columns)), fill, dtype)
        array[part["step"].to_numpy()] = part.select(*columns).to_numpy()
        out[str(sid)] = array
    return out


def score_traces(oof: pl.DataFrame, manifest: Manifest) -> dict[str, np.ndarray]:
    """Per-step scores (series_id, step, onset, wakeup[, fold]) -> one (steps, 2) float32
    onset/wakeup trace per series, zeros where a step has no score."""
    return _per_step(oof, manifest, EVENTS, 0.0, np.float32)


def oof_candidates(
    oof: pl.DataFrame, manifest: Manifest, postprocess: PostprocessConfig
) -> pl.DataFrame:
    """Candidates of every validated stretch, with the `fold` that validated each. The stretches
    of one series are post-processed as one trace, as inference does with the whole series
    (they meet in the gaps between nights, where scores are low), once per series."""
    folds = _per_step(oof, manifest, ("fold",), -1, np.int64)
    frames = []
    for sid, trace in score_traces(oof, manifest).items():
        cand = predict_candidates(manifest, sid, trace, postprocess)
        fold = folds[sid][cand["step"].to_numpy(), 0]
        frames.append(cand.with_columns(fold=pl.Series(fold, dtype=pl.Int64)))
    return pl.concat(frames).filter(pl.col("fold") >= 0)


def solution_of(oof: pl.DataFrame, solution: pl.DataFrame) -> pl.DataFrame:
    """The labelled events inside the OOF stretches, with the fold that validated each."""
    spans = oof.group_by("fold", "series_id").agg(
        pl.col("step").min().alias("lo"), pl.col("step").max().alias("hi")
    )
    return (
        solution.join(spans, on="series_id")
        .filter(pl.col("step").is_between(pl.col("lo"), pl.col("hi")))
        .drop("lo", "hi")
        .sort("series_id", "step")
    )


def format_score(table: pl.DataFrame, score: float, what: str) -> str:
    """'what: score 0.7000 (onset 0.8000, wakeup 0.6000)'."""
    per_event = table.group_by("event").agg(pl.col("ap").mean()).sort("event")
    parts = ", ".join(f"{e} {ap:.4f}" for e, ap in per_event.iter_rows())
    return f"{what}: score {score:.4f} ({parts})"
