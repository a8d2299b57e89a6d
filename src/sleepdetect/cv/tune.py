"""`python -m sleepdetect tune PARAMS`: post-processing chosen on out-of-fold predictions with
nested folds, so that the score it reports was never used to choose anything.

Requires: `<exp>/oof.parquet` (02_train of every fold, `split.fold: null`).
Outputs, under `<output.dir>/<exp_name>/tune/`:
  postprocess.yaml   the setting chosen on all folds, and the OOF record it was chosen on
                     (03_infer uses it with `infer.tuned: true`; `package` bakes it in)
  nested.csv         per outer fold: the setting chosen on the other folds, its score there,
                     and its score on the held-out fold
  grid.csv           every setting's pooled OOF score over all folds
  metrics.csv        AP of every event x tolerance of the nested candidates (mean over the
                     folds), and the nested score

How. Each setting (one combination of `tune.grid`) post-processes every fold's OOF scores;
its candidates are matched once, with each (series, fold) stretch as its own series, which
changes nothing (folds are cut between nights) and lets the score of any set of folds be pooled
from the same flags (metric.MatchedDetections); the labels' side of the metric is prepared once
for all settings (metric.PreparedSolution). For outer fold k the setting with the best
score on all folds but k is applied to fold k and scores it; the mean over folds is the nested
score (standard nested cross-validation), with a bootstrap interval over nights (resampled
with replacement). The held-out candidates of all folds scored together are printed too; that
figure is lower when folds chose settings whose scores are not comparable across nights (raw
mass beside per-night shares), which no single deployed setting suffers from.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from sleepdetect.config import Config, ConfigError, PostprocessConfig, from_dict, to_dict
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import atomic_path, write_text
from sleepdetect.core.records import change, read_record
from sleepdetect.cv.oof import format_score, oof_candidates, read_oof, score_traces, solution_of
from sleepdetect.cv.stage2 import rescore_out_of_fold
from sleepdetect.data.prepare import Manifest, open_prepared
from sleepdetect.data.windows import night_cuts
from sleepdetect.events.metric import PreparedSolution, event_detection_ap_table, match_detections
from sleepdetect.events.postprocess import PEAK_OPTIONS
from sleepdetect.events.scoring import write_metrics
from sleepdetect.experiment import Experiment


@dataclasses.dataclass
class TuneResult:
    nested_score: float  # mean over folds of each fold's score under its nested choice
    pooled_score: float  # the nested candidates of all folds scored together
    interval: tuple[float, float]  # 95 % bootstrap interval of nested_score over nights
    table: pl.DataFrame  # AP per event x tolerance of the nested candidates, fold mean
    chosen: list[dict[str, Any]]  # per outer fold: the setting chosen on the other folds
    best: dict[str, Any]  # the setting chosen on all folds
    grid: pl.DataFrame  # every setting's pooled score
    stage2_score: float | None = None  # nested score with the second stage, when asked


def grid_settings(base: PostprocessConfig, grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as postprocess overrides of `base`, less those
    that would post-process exactly like an earlier one; a field that PostprocessConfig lacks,
    or a value of the wrong type, is an error here."""
    names = list(grid)
    settings, seen = [], set()
    for values in itertools.product(*grid.values()):
        setting = dict(zip(names, values, strict=True))
        effective = to_dict(apply_setting(base, setting))
        if effective["method"] == "mass":  # peak options make no difference there
            effective = {k: v for k, v in effective.items() if k not in PEAK_OPTIONS}
        key = repr(sorted(effective.items()))
        if key not in seen:
            seen.add(key)
            settings.append(setting)
    return settings


def apply_setting(base: PostprocessConfig, setting: dict[str, Any]) -> PostprocessConfig:
    """`base` with a grid setting's values, each checked as a params file's would be (through
    the dict, so a wrong type in tune.grid names the key)."""
    return from_dict(PostprocessConfig, {**to_dict(base), **setting}, source="tune.grid")


def _relabel(frame: pl.DataFrame, unit: pl.Expr) -> pl.DataFrame:
    return frame.with_columns(series_id=pl.col("series_id") + "@" + unit.cast(pl.String))


def _night_units(frame: pl.DataFrame, cuts: dict[str, np.ndarray]) -> pl.Series:
    """Index of the night piece (data/windows.night_cuts) each row's step falls in."""
    out = np.zeros(len(frame), np.int64)
    sids, steps = frame["series_id"].to_numpy(), frame["step"].to_numpy()
    for sid, c in cuts.items():
        mask = sids == sid
        out[mask] = np.searchsorted(c, steps[mask], side="right") - 1
    return pl.Series(out)


def nested_select(scores: np.ndarray) -> np.ndarray:
    """scores: (settings, folds) pooled score of each setting on all folds but each fold ->
    the chosen setting of each outer fold (the first of equal best ones)."""
    return np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=0)


def run_tune(
    oof: pl.DataFrame,
    manifest: Manifest,
    base: PostprocessConfig,
    grid: dict[str, list[Any]],
    n_bootstrap: int = 1000,
    seed: int = 0,
    stage2: bool = False,
) -> TuneResult:
    """The nested search on OOF scores (see the module docstring). With `stage2`, each fold's
    candidates under its chosen setting are also rescored by LightGBM trained on the other
    folds' candidates (stage2.py), and that nested score is reported beside."""
    settings = grid_settings(base, grid)
    if "day_repeat" not in manifest.feature_names:
        kept = [s for s in settings if not s.get("suppress_repeated")]
        if len(kept) < len(settings):
            print("tune: no day_repeat feature prepared; settings with suppress_repeated skipped")
        settings = kept
    solution = solution_of(oof, manifest.read_events().filter(pl.col("step").is_not_null()))
    folds = sorted(solution["fold"].unique().to_list())
    if len(folds) < 2:
        raise InputError(f"tune needs labelled OOF predictions of 2+ folds, found folds {folds}")
    units = _relabel(solution, pl.col("fold"))
    unit_fold = {u: f for u, f in units.select("series_id", "fold").unique().iter_rows()}
    prepared = PreparedSolution(units)  # the labels' side of the metric, once for all settings
    fold_of = np.array([unit_fold[u] for u in prepared.series])

    per_setting = []  # (setting, candidates)
    rest = np.zeros((len(settings), len(folds)))  # pooled score on all folds but k
    alone = np.zeros((len(settings), len(folds)))  # score on fold k alone
    overall = np.zeros(len(settings))
    for i, setting in enumerate(settings):
        cand = oof_candidates(oof, manifest, apply_setting(base, setting))
        per_setting.append(cand)
        matched = prepared.match(_relabel(cand, pl.col("fold")))
        overall[i] = matched.score()
        for j, k in enumerate(folds):
            rest[i, j] = matched.score((fold_of != k).astype(np.int64))
            alone[i, j] = matched.score((fold_of == k).astype(np.int64))

    choice = nested_select(rest)
    nested = pl.concat(
        [per_setting[c].filter(pl.col("fold") == k) for c, k in zip(choice, folds, strict=True)]
    )
    per_fold = [
        event_detection_ap_table(
            solution.filter(pl.col("fold") == k), nested.filter(pl.col("fold") == k)
        )[0]
        for k in folds
    ]
    table = pl.concat(per_fold).group_by("event", "tolerance", maintain_order=True).mean()
    pooled = event_detection_ap_table(solution, nested)[1]
    interval = bootstrap_interval(solution, nested, manifest, n_bootstrap, seed)
    chosen = [
        {"fold": k, **settings[c], "score_other_folds": rest[c, j], "score_this_fold": alone[c, j]}
        for j, (c, k) in enumerate(zip(choice, folds, strict=True))
    ]
    grid_frame = pl.DataFrame(
        [
            {**{n: str(v) for n, v in s.items()}, "oof_score": o}
            for s, o in zip(settings, overall, strict=True)
        ]
    )
    best = settings[int(np.argmax(overall))]
    nested_score = float(np.mean([c["score_this_fold"] for c in chosen]))
    stage2_score = None
    if stage2:
        traces = score_traces(oof, manifest)
        rescored = {
            c: rescore_out_of_fold(per_setting[c], traces, manifest, solution, seed=seed)
            for c in set(choice.tolist())
        }
        stage2_score = float(
            np.mean(
                [
                    event_detection_ap_table(
                        solution.filter(pl.col("fold") == k),
                        rescored[c].filter(pl.col("fold") == k),
                    )[1]
                    for c, k in zip(choice, folds, strict=True)
                ]
            )
        )
    return TuneResult(nested_score, pooled, interval, table, chosen, best, grid_frame, stage2_score)


def bootstrap_interval(
    solution: pl.DataFrame,
    candidates: pl.DataFrame,
    manifest: Manifest,
    n: int,
    seed: int,
) -> tuple[float, float]:
    """95 % interval of the nested score (the mean over folds of each fold's score) over `n`
    resamples of the nights, with replacement. Each night piece (data/windows.night_cuts) is
    matched as its own series, once; a resample scores each fold on the pieces drawn from it."""
    if n <= 0:
        return float("nan"), float("nan")
    events = manifest.read_events()
    cuts = {
        sid: night_cuts(events.filter(pl.col("series_id") == sid), length)
        for sid, length in manifest.lengths.items()
        if sid in set(solution["series_id"])
    }
    sol = _relabel(solution, _night_units(solution, cuts))
    cand = candidates.filter(pl.col("series_id").is_in(list(cuts)))
    matched = match_detections(sol, _relabel(cand, _night_units(cand, cuts)))
    unit_fold = dict(sol.select("series_id", "fold").unique().iter_rows())
    fold_of = np.array([unit_fold[u] for u in matched.series])
    rng = np.random.default_rng(seed)
    n_units = len(matched.series)
    scores = []
    for draw in rng.integers(0, n_units, (n, n_units)):
        counts = np.bincount(draw, minlength=n_units)
        per_fold = [matched.score(counts * (fold_of == k)) for k in np.unique(fold_of[draw])]
        scores.append(np.nanmean(per_fold))
    lo, hi = np.nanpercentile(scores, [2.5, 97.5])
    return float(lo), float(hi)


def tune(cfg: Config) -> TuneResult:
    """The stage: read and check the OOF file, search, print, write `<exp>/tune/`."""
    start = time.perf_counter()
    exp = Experiment.of(cfg)
    oof = read_oof(exp.root)
    manifest = open_prepared(cfg)
    n_settings = len(grid_settings(cfg.postprocess, cfg.tune.grid))
    print(f"tune: {n_settings} settings, nested over the folds of {exp.oof}")
    result = run_tune(
        oof,
        manifest,
        cfg.postprocess,
        cfg.tune.grid,
        cfg.tune.bootstrap,
        cfg.seed,
        stage2=cfg.tune.stage2,
    )
    out = exp.tune
    write_metrics(result.table, result.nested_score, out / "metrics.csv")
    with atomic_path(out / "nested.csv") as tmp:
        pl.DataFrame([{k: str(v) for k, v in c.items()} for c in result.chosen]).write_csv(tmp)
    with atomic_path(out / "grid.csv") as tmp:
        result.grid.sort("oof_score", descending=True).write_csv(tmp)
    tuned = apply_setting(cfg.postprocess, result.best)
    record = read_record(exp.oof_record)
    write_text(
        exp.tuned,
        yaml.safe_dump({"postprocess": to_dict(tuned), "oof": record}, sort_keys=False),
    )
    lo, hi = result.interval
    print(format_score(result.table, result.nested_score, "nested OOF (mean over folds)"))
    print(f"  95 % bootstrap interval over nights: {lo:.4f} - {hi:.4f}")
    if result.stage2_score is not None:
        print(f"  with the second stage (LightGBM rescoring): {result.stage2_score:.4f}")
    print(
        f"  all folds' nested candidates scored together: {result.pooled_score:.4f} (lower "
        "when folds chose settings whose scores rank differently across nights)"
    )
    for c in result.chosen:
        print(
            f"  fold {c['fold']}: chosen on the other folds ({c['score_other_folds']:.4f}), "
            f"scores {c['score_this_fold']:.4f} here: "
            + ", ".join(f"{k}={v}" for k, v in c.items() if k in result.best)
        )
    print(
        "chosen on all folds (used by 03_infer with infer.tuned): "
        + ", ".join(f"{k}={v}" for k, v in result.best.items())
    )
    print(f"tune done in {time.perf_counter() - start:.1f} s; {out}")
    return result


def load_tuned(exp_dir: Path) -> PostprocessConfig:
    """The post-processing `tune` chose, checked against the current folds: a fold retrained
    since makes it stale, and that is an error, never a silent use."""
    exp = Experiment(exp_dir)
    path = exp.tuned
    if not path.is_file():
        raise InputError(
            f"{path}: not found; infer.tuned needs `python -m sleepdetect tune PARAMS` first "
            "(or tune.enabled in 02_train)"
        )
    raw = yaml.safe_load(path.read_text())
    reason = change(raw["oof"], read_record(exp.oof_record) or {})
    if reason:
        raise InputError(
            f"{path} was chosen on other fold models than {exp_dir}'s current ones ({reason}); "
            "run tune again"
        )
    try:
        return from_dict(PostprocessConfig, raw["postprocess"], source=str(path))
    except ConfigError as e:
        raise InputError(str(e)) from e
