"""03_infer: bundles (or a baseline) -> per-series scores -> candidates -> a validated
submission.csv, its record, and with labels its score and a picture of a few nights."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl

from sleepdetect.baselines.hdcza import build_baseline, candidate_trace, features_for
from sleepdetect.config import Config, ConfigError, PostprocessConfig, save_config, to_dict
from sleepdetect.core.files import atomic_path
from sleepdetect.core.progress import progress
from sleepdetect.core.records import write_record
from sleepdetect.cv.tune import load_tuned
from sleepdetect.data.prepare import Manifest, open_prepared
from sleepdetect.events.candidates import predict_candidates, score_frame
from sleepdetect.events.metric import event_detection_ap_table
from sleepdetect.events.scoring import write_metrics
from sleepdetect.events.submission import write_submission
from sleepdetect.experiment import Experiment, model_sha256
from sleepdetect.inference.bundles import Bundle, ensemble_bundles, outside_bundles, same_features
from sleepdetect.inference.ensemble import series_scores
from sleepdetect.inference.predict import pick_device
from sleepdetect.plots import night_picks, plot_event_scores, plot_nights
from sleepdetect.report import PAIR_RULE, format_report, locate, pick_series, write_report


def infer(cfg: Config) -> Path:
    """03_infer: predict every series of `infer.phase` with the bundles, post-process, write a
    validated submission.csv (and score it when the phase has labels). Returns its path.
    With `infer.baseline`, a heuristic makes the candidates instead (`infer_baseline`)."""
    if cfg.infer.baseline is not None:
        return infer_baseline(cfg)
    device = pick_device()
    bundles, weights = ensemble_bundles(cfg, device)
    outside = outside_bundles(cfg, device)
    same_features(bundles + outside)
    features = bundles[0].config.prepare.features
    manifest = open_prepared(cfg, cfg.infer.phase, features, on_stale="prepare")
    postprocess = _postprocess(cfg)
    out = Experiment.of(cfg).infer(cfg.infer.phase)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")

    plotted = _plotted_series(manifest)
    candidates, traces = [], {}
    for entry in progress(manifest.series, desc=f"infer {cfg.infer.phase}", unit="series"):
        feats = manifest.features(entry.series_id)
        s = series_scores(cfg, bundles, weights, outside, feats, device)
        candidates.append(predict_candidates(manifest, entry.series_id, s, postprocess))
        if entry.series_id in plotted:
            traces[entry.series_id] = s
    record = submission_record(bundles, weights, outside, cfg, manifest, postprocess)
    return _write_outputs(cfg, out, candidates, traces, manifest, record)


def infer_baseline(cfg: Config) -> Path:
    """03_infer with `infer.baseline` (hdcza.BASELINES): the heuristic's candidates of every
    series of `infer.phase`, nothing trained or loaded, and the same outputs as `infer`
    (submission.csv, submission.json naming the baseline and its params, metrics.csv)."""
    others = {"infer.bundles": cfg.infer.bundles, "ensemble.outside": cfg.ensemble.outside}
    others |= {"infer.tuned": cfg.infer.tuned}
    given = [k for k, v in others.items() if v]
    if given:
        raise ConfigError(
            f"infer.baseline={cfg.infer.baseline} makes the candidates without bundles or "
            f"tuned post-processing, but {', '.join(given)} is set: leave it empty (or false), "
            "or set infer.baseline=null to predict with bundles"
        )
    baseline = build_baseline(cfg.infer.baseline, cfg.infer.baseline_params)
    features = features_for(cfg.infer.baseline, baseline, cfg.prepare.features)
    manifest = open_prepared(cfg, cfg.infer.phase, features, on_stale="prepare")
    out = Experiment.of(cfg).infer(cfg.infer.phase)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    print(f"infer: baseline {cfg.infer.baseline} makes the candidates (postprocess not used)")
    candidates, traces = [], {}
    for entry in progress(manifest.series, desc=f"infer {cfg.infer.phase}", unit="series"):
        found = baseline.candidates(manifest, entry.series_id)
        candidates.append(found)
        if manifest.events is not None:  # kept only to plot against the labels
            traces[entry.series_id] = candidate_trace(found, entry.n_steps)
    record = {
        "baseline": {"name": cfg.infer.baseline, "params": baseline.params},
        "bundles": [],
        "data": manifest.sources,
        "postprocess": None,
    }
    return _write_outputs(cfg, out, candidates, traces, manifest, record)


def baseline_scores(cfg: Config, manifest: Manifest, series_id: str) -> np.ndarray:
    """(steps, 2) per-step scores of `infer.baseline` for one prepared series: each candidate's
    score at its step, 0 elsewhere (what 03_infer pictures in place of a model's scores)."""
    baseline = build_baseline(cfg.infer.baseline, cfg.infer.baseline_params)
    found = baseline.candidates(manifest, series_id)
    return candidate_trace(found, manifest.lengths[series_id])


def _write_outputs(
    cfg: Config,
    out: Path,
    candidates: list[pl.DataFrame],
    traces: dict[str, np.ndarray],
    manifest: Manifest,
    record: dict,
) -> Path:
    """submission.csv (validated), then its record, the copy and, with labels, the score."""
    (out / RECORD).unlink(missing_ok=True)  # no record: no submission of these inputs yet
    submission = write_submission(
        pl.concat(candidates),
        Experiment.of(cfg).submission(cfg.infer.phase),
        series_lengths=manifest.lengths,
    )
    write_record(out / RECORD, record)
    if cfg.infer.copy_to:
        with atomic_path(cfg.infer.copy_to) as tmp:
            shutil.copyfile(submission, tmp)
        print(f"submission copied to {cfg.infer.copy_to}")
    if manifest.events is not None:
        _score(manifest, submission, traces, out)
    return submission


RECORD = "submission.json"


def submission_record(
    bundles: list[Bundle],
    weights: list[float],
    outside: list[Bundle],
    cfg: Config,
    manifest: Manifest,
    postprocess: PostprocessConfig,
) -> dict:
    """What a submission was made from: each bundle (path, sha256 of model.pt, its share of
    the scores), the prepared data's sources and the post-processing."""
    share = 1 - cfg.ensemble.outside_weight if outside else 1.0
    shares = [share * w / sum(weights) for w in weights]
    shares += [cfg.ensemble.outside_weight / max(len(outside), 1)] * len(outside)
    return {
        "bundles": [
            {"path": str(b.path), "model_sha256": model_sha256(b.path), "share": w}
            for b, w in zip(bundles + outside, shares, strict=True)
        ],
        "data": manifest.sources,
        "postprocess": to_dict(postprocess),
    }


def _postprocess(cfg: Config) -> PostprocessConfig:
    """The postprocess section, or the settings `tune` chose (`infer.tuned`)."""
    if not cfg.infer.tuned:
        return cfg.postprocess
    print(f"post-processing chosen by tune: {Experiment.of(cfg).tune}")
    return load_tuned(cfg.exp_dir)


def _labelled(manifest: Manifest) -> pl.DataFrame:
    return manifest.read_events().filter(pl.col("step").is_not_null())


def _plotted_series(manifest: Manifest) -> set[str]:
    """The series of the nights nights.png shows: only their per-step scores are kept (all of
    them would be about 1 GB at competition scale)."""
    if manifest.events is None:
        return set()
    return set(night_picks(_labelled(manifest))["series_id"])


def _score(manifest: Manifest, submission: Path, traces: dict[str, np.ndarray], out: Path) -> None:
    """Score the submission against the phase's labels (metrics.csv) and plot a few nights."""
    solution = _labelled(manifest)
    candidates = pl.read_csv(submission)
    table, score = event_detection_ap_table(solution, candidates)
    write_metrics(table, score, out / "metrics.csv")
    print(f"score against {manifest.root / manifest.events}: {score:.4f}")
    if traces:
        per_step = pl.concat(score_frame(sid, s) for sid, s in traces.items())
        plot_nights(per_step, solution, candidates, out / "nights.png")


# ---------------------------------------------------------------- the notebook's pictures


def scores_of(cfg: Config, manifest: Manifest, series_id: str) -> pl.DataFrame:
    """Per-step scores (series_id, step, onset, wakeup) 03_infer's ensemble gives one series,
    computed again: infer keeps none once the candidates are written. Same bundles, weights
    and outside blend as `infer` (a baseline: its candidates' scores)."""
    if cfg.infer.baseline is not None:
        return score_frame(series_id, baseline_scores(cfg, manifest, series_id))
    device = pick_device()
    bundles, weights = ensemble_bundles(cfg, device)
    outside = outside_bundles(cfg, device)
    s = series_scores(cfg, bundles, weights, outside, manifest.features(series_id), device)
    return score_frame(series_id, s)


def score_picture(cfg: Config, submission: Path, series_id: str = "") -> Path:
    """scores-<series_id>.png beside `submission`: the ensemble's per-step scores of one series
    (default: the first), the candidates kept and, with labels, the true events."""
    manifest, submission = locate(cfg, submission)
    sid = pick_series(manifest, series_id)
    entry = next(s for s in manifest.series if s.series_id == sid)
    return plot_event_scores(
        scores_of(cfg, manifest, sid),
        pl.read_csv(submission),
        submission.parent / f"scores-{sid}.png",
        events=manifest.read_events() if manifest.events else None,
        first_timestamp=entry.first_timestamp,
        title=f"{sid}: predicted scores, candidates and labels",
    )


def series_report(cfg: Config, submission: Path, series_id: str = "") -> Path:
    """report.csv beside `submission` for every series; prints the pair rule and the nights of
    one series (default: the first) and returns its actogram."""
    manifest, submission = locate(cfg, submission)
    sid = pick_series(manifest, series_id)
    report = write_report(manifest, submission, submission.parent, actograms=[sid])
    print(PAIR_RULE)
    print(format_report(report.table.filter(pl.col("series_id") == sid)))
    print(f"report: {report.csv}")
    return report.actograms[sid]
