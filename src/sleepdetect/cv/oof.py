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

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from sleepdetect.config import Config, PostprocessConfig
from sleepdetect.core.constants import EVENTS
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import atomic_path
from sleepdetect.core.records import change, read_record, write_record
from sleepdetect.data.prepare import Manifest, open_prepared
from sleepdetect.data.windows import fold_count
from sleepdetect.events.candidates import predict_candidates
from sleepdetect.events.metric import event_detection_ap_table
from sleepdetect.events.scoring import write_metrics
from sleepdetect.experiment import FOLD_OOF, MODEL_FILE, Experiment, model_sha256
from sleepdetect.inference.bundles import outside_bundles
from sleepdetect.inference.ensemble import blend_outside
from sleepdetect.inference.predict import pick_device


def trained_folds(cfg: Config) -> list[int]:
    """The folds 02_train trains: `split.fold`, or every fold when it is None."""
    n = fold_count(cfg.split.kind, cfg.split.n_folds)
    return list(range(n)) if cfg.split.fold is None else [cfg.split.fold]


def _mean_of(members: list[pl.DataFrame], where: Path) -> pl.DataFrame:
    """The OOF scores of a fold's seeds averaged, as inference averages them; they validated
    the same steps (the split does not depend on the seed)."""
    first, steps = members[0], members[0].select("series_id", "step")
    if any(not m.select("series_id", "step").equals(steps) for m in members[1:]):
        raise InputError(f"{where}: its seeds validated other steps; train the fold again")
    n = len(members)
    return first.with_columns(pl.Series(e, sum(m[e] for m in members) / n) for e in EVENTS)


def gather_oof(cfg: Config) -> Path:
    """Concatenate the folds' OOF scores, score their candidates (the postprocess section),
    print the score with onset and wakeup apart, and record which bundles made them."""
    exp = Experiment.of(cfg)
    frames, record = [], {}
    for fold in trained_folds(cfg):
        members = []
        for member in range(cfg.trainer.seeds):
            fold_dir = exp.fold(fold, member)
            for name in (FOLD_OOF, MODEL_FILE):
                if not (fold_dir / name).is_file():
                    raise InputError(f"{fold_dir}: no {name}; train fold {fold} first (02_train)")
            members.append(pl.read_parquet(fold_dir / FOLD_OOF))
            record[fold_dir.name] = model_sha256(fold_dir)
        frames.append(_mean_of(members, fold_dir).with_columns(fold=pl.lit(fold, pl.Int64)))
    manifest = open_prepared(cfg)
    oof = _blend_outside(pl.concat(frames).sort("series_id", "step"), manifest, cfg)
    with atomic_path(exp.oof) as tmp:
        oof.write_parquet(tmp)
    write_record(exp.oof_record, _models_record(exp, record, cfg.ensemble.outside))

    solution = manifest.read_events().filter(pl.col("step").is_not_null())
    candidates = oof_candidates(oof, manifest, cfg.postprocess)
    table, score = event_detection_ap_table(solution_of(oof, solution), candidates)
    write_metrics(table, score, exp.oof_metrics)
    print(format_score(table, score, f"OOF over {len(frames)} fold(s)"))
    return exp.oof


def _blend_outside(oof: pl.DataFrame, manifest: Manifest, cfg: Config) -> pl.DataFrame:
    """The folds' OOF scores blended with `ensemble.outside`'s scores of the same steps, as
    inference blends them (the outside bundles never saw these nights)."""
    device = pick_device()
    outside = outside_bundles(cfg, device)
    if not outside:
        return oof
    weight = cfg.ensemble.outside_weight
    print(f"OOF scores blended with {len(outside)} outside bundle(s) at weight {weight}")
    traces, parts = score_traces(oof, manifest), []
    for (sid,), part in oof.group_by(["series_id"], maintain_order=True):
        features = manifest.features(str(sid))
        blended = blend_outside(
            traces[str(sid)], outside, weight, features, cfg.infer.batch_size, device
        )[part["step"].to_numpy()]
        parts.append(part.with_columns(onset=blended[:, 0], wakeup=blended[:, 1]))
    return pl.concat(parts)


def read_oof(exp_dir: Path) -> pl.DataFrame:
    """`<exp>/oof.parquet`, checked against the bundles that made it: a fold retrained since
    (its model.pt changed) makes the file stale, and reading it is an error."""
    exp = Experiment(exp_dir)
    path, record_path = exp.oof, exp.oof_record
    if not path.is_file() or not record_path.is_file():
        raise InputError(
            f"{exp_dir}: no {path.name}; train every fold first (02_train with split.fold: null)"
        )
    recorded = read_record(record_path) or {}
    folds, outside = recorded.get("folds", {}), recorded.get("outside", {})
    reason = change(recorded, _models_record(exp, folds, outside))
    if reason:
        raise InputError(
            f"{path} is stale: a model it was gathered from changed ({reason}); run 02_train "
            "again (it gathers the OOF predictions of the current folds)"
        )
    return pl.read_parquet(path)


def _models_record(exp: Experiment, folds: Iterable[str], outside: Iterable[str]) -> dict:
    """The sha256 of each fold model (by folder name) and outside bundle (by path) as they are
    now: what oof.json records, and what `read_oof` compares it with."""
    return {
        "folds": {name: model_sha256(exp.root / name) for name in folds},
        "outside": {b: model_sha256(b) for b in outside},
    }


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
