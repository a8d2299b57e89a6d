"""Whole-series prediction with plain torch: no Lightning, so the Kaggle kernel stays small.

A series is cut into overlapping windows; each window keeps only its centre (its edges see
half a context) except at the series' ends, and overlapping centres are averaged. A series
shorter than a window is padded and cropped back, so any length gives one score per step.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch

from sleepdetect.candidates import predict_candidates, score_frame
from sleepdetect.config import (
    Config,
    ConfigError,
    PostprocessConfig,
    load_config,
    save_config,
    to_dict,
)
from sleepdetect.data.prepare import MANIFEST, Manifest, prepare, stale_reason
from sleepdetect.errors import InputError
from sleepdetect.files import atomic_path, write_json
from sleepdetect.fingerprints import file_hash
from sleepdetect.models import build_model
from sleepdetect.models.base import SleepModel
from sleepdetect.paths import archive_instead, nested, nested_candidates
from sleepdetect.progress import progress
from sleepdetect.registry import UnknownComponentError


def window_starts(n_steps: int, length: int, stride: int) -> np.ndarray:
    """Start steps of windows of `length` every `stride` steps, the last flush with the end."""
    if stride < 1 or stride > length:
        raise ValueError(f"stride must be in 1..window length ({length}), got {stride}")
    if n_steps <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_steps - length, stride, dtype=np.int64)
    return np.append(starts, n_steps - length)


def _kept_weights(starts: np.ndarray, n_steps: int, length: int, stride: int) -> np.ndarray:
    """(windows, length) 1 where a window's prediction counts: its centre, plus the outer edge
    of the first and last window, so every step is covered at least once."""
    trim = (length - stride) // 2
    keep = np.zeros((len(starts), length), dtype=np.float32)
    keep[:, trim : length - trim] = 1
    keep[starts == starts.min(), :trim] = 1
    keep[starts + length >= n_steps, length - trim :] = 1
    return keep


@torch.inference_mode()
def predict_series(
    model: SleepModel,
    features: np.ndarray,
    length: int,
    stride: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """(steps, features) array of one series -> (steps, 2) onset/wakeup scores per step."""
    n_steps = len(features)
    device = torch.device(device)
    starts = window_starts(n_steps, length, stride)
    keep = _kept_weights(starts, max(n_steps, length), length, stride)
    total = np.zeros((max(n_steps, length), 2), dtype=np.float32)
    weight = np.zeros(max(n_steps, length), dtype=np.float32)
    x_all = features if n_steps >= length else _pad(features, length)
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    model.eval()
    for i in range(0, len(starts), batch_size):
        batch_starts = starts[i : i + batch_size]
        x = np.stack([x_all[s : s + length] for s in batch_starts])  # (batch, length, features)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))).to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            scores = model.predict_scores(x)  # (batch, length, 2)
        scores = scores.float().cpu().numpy()
        for j, s in enumerate(batch_starts):
            w = keep[i + j]
            total[s : s + length] += scores[j] * w[:, None]
            weight[s : s + length] += w
    return (total / np.maximum(weight, 1e-12)[:, None])[:n_steps]


def _pad(features: np.ndarray, length: int) -> np.ndarray:
    """Repeat the last step up to `length`: a short series looks like it stays as it ends."""
    return np.concatenate([features, np.repeat(features[-1:], length - len(features), axis=0)])


# ---------------------------------------------------------------- bundles and the stage


@dataclass
class Bundle:
    """What 02_train leaves in a fold folder: the resolved config and plain weights."""

    path: Path
    config: Config
    model: SleepModel


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Rebuild a trained model from `model.pt` + `config.yaml` (no Lightning, no download).

    A bundle found one or two folders deeper than named (a Kaggle dataset unpacked into a
    folder of its own name) is used, with a note. Anything else that is not a bundle 02_train
    wrote is an InputError naming the file and the fix: no such folder, an archive where the
    folder should be, a config.yaml that is not a config, a model.pt that is not plain torch
    weights (truncated, another format) or not of the model its config.yaml describes.
    """
    path = _bundle_folder(Path(path))
    cfg = _bundle_config(path)
    # the weights come from model.pt: never download pretrained encoder weights for them
    model_cfg = replace(cfg.model, encoder_weights=None)
    try:
        model = build_model(model_cfg, in_channels=len(cfg.prepare.features))
    except (ConfigError, UnknownComponentError) as e:
        raise InputError(f"{path / 'config.yaml'}: {e}; {_SAME_CONFIG}") from e
    _fit_weights(model, _bundle_state(path), path, cfg)
    return Bundle(path, cfg, model.to(device).eval())


_RETRAIN = "retrain the bundle (python -m sleepdetect run <params> --only train --force)"
_SAME_CONFIG = (
    "the config.yaml beside model.pt must be the one it was trained with: copy both files "
    f"from the same outputs/<exp_name>/fold<k>/, or {_RETRAIN}"
)


def _bundle_folder(path: Path) -> Path:
    """The folder holding `path`'s model.pt: `path`, or one or two folders deeper (noted)."""
    found = nested(path, "model.pt")
    if found is not None and (found / "config.yaml").is_file():
        if found != path:
            print(f"note: bundle {path} is {found} (unpacked a folder deeper)")
        return found
    archive = archive_instead(path)
    if archive is not None:
        raise InputError(
            f"{path}: no such bundle folder, but {archive} is an archive where its folders "
            "should be (Kaggle did not unpack a dataset uploaded with `-r tar`). Upload that "
            "dataset again unpacked (a new version with `kaggle datasets version -p <folder> "
            f"-r zip`), or unpack it (`tar -xf {archive}`) and point infer.bundles there"
        )
    if not path.is_dir():
        raise InputError(
            f"{path}: no such folder; a bundle is a fold folder written by 02_train "
            "(outputs/<exp_name>/fold<k>/ holding model.pt and config.yaml)"
        )
    several = nested_candidates(path, "model.pt")
    if len(several) > 1:
        shown = ", ".join(str(p) for p in several[:5])
        raise InputError(
            f"{path}: not a bundle but a folder of {len(several)} ({shown}); name each "
            "bundle folder in infer.bundles"
        )
    for name in ("model.pt", "config.yaml"):
        if not (path / name).is_file():
            raise InputError(
                f"{path}: no {name}; a bundle is a fold folder written by 02_train "
                "(outputs/<exp_name>/fold<k>/)"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _bundle_config(path: Path) -> Config:
    try:
        return load_config(path / "config.yaml")
    except ConfigError as e:
        raise InputError(
            f"{path / 'config.yaml'}: not a bundle config ({e}); {_SAME_CONFIG}"
        ) from e


def _bundle_state(path: Path) -> dict[str, torch.Tensor]:
    """model.pt's state_dict, or an InputError saying why it is not one."""
    file = path / "model.pt"
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except PermissionError:
        raise  # names the file itself, and it is not the file's content
    except Exception as e:  # torch raises many types (OSError too) for a file not its own
        first = (str(e).splitlines() or [""])[0][:160]
        raise InputError(
            f"{file}: not readable as torch weights ({type(e).__name__}: {first}); the file "
            f"is truncated (an interrupted copy or upload?) or of another format. Copy it "
            f"again from the fold folder 02_train wrote, or {_RETRAIN}"
        ) from e
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InputError(
            f"{file}: holds a {type(state).__name__}, not the state_dict (name -> tensor) "
            f"02_train writes (a Lightning checkpoint is last.ckpt, not model.pt); {_RETRAIN}"
        )
    return state


def _fit_weights(model: SleepModel, state: dict, path: Path, cfg: Config) -> None:
    """Load `state` into `model`, or an InputError listing what does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} in model.pt, {tuple(v.shape)} by config.yaml"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else "",
        ]
        raise InputError(
            f"{path / 'model.pt'} is not the model {path / 'config.yaml'} describes "
            f"(model.name={cfg.model.name}, model.params={cfg.model.params}, "
            f"{len(cfg.prepare.features)} features): {', '.join(p for p in parts if p)}; "
            f"{_SAME_CONFIG}"
        )
    params = dict(model.named_parameters())
    bad = [k for k in params if state[k].is_floating_point() and not state[k].isfinite().all()]
    if bad:
        raise InputError(
            f"{path / 'model.pt'}: {len(bad)} weights are not finite (e.g. {bad[0]}): the "
            f"training diverged; {_RETRAIN} (a lower optimizer.lr?)"
        )
    model.load_state_dict(state)


def find_bundles(cfg: Config) -> list[Path]:
    """`infer.bundles`, or every fold this experiment trained (its first `trainer.seeds`
    models a fold, those of its OOF scores)."""
    if cfg.infer.bundles:
        return [Path(b) for b in cfg.infer.bundles]
    found = sorted(p for p in cfg.exp_dir.glob("fold*") if (p / "model.pt").is_file())
    extra = [p for p in found if _seed_member(p.name) >= cfg.trainer.seeds]
    if extra:  # left by a run with more trainer.seeds: not in the OOF scores, so not here
        print(
            f"infer: {', '.join(p.name for p in extra)} left out "
            f"(trainer.seeds={cfg.trainer.seeds})"
        )
        found = [p for p in found if p not in extra]
    if not found:
        raise InputError(
            f"{cfg.exp_dir}: no trained fold (fold*/model.pt); run 02_train first or name "
            "bundles in infer.bundles"
        )
    return found


def _seed_member(name: str) -> int:
    """`fold2-seed1` -> 1, `fold2` -> 0 (oof.member_dir's names)."""
    _, _, member = name.partition("-seed")
    return int(member) if member.isdigit() else 0


def ensemble_scores(
    bundles: list[Bundle],
    weights: list[float],
    features: np.ndarray,
    stride: int | None,
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    """(steps, 2) weighted mean of every bundle's per-step scores for one series."""
    total = np.zeros((len(features), 2), dtype=np.float64)
    for bundle, weight in zip(bundles, weights, strict=True):
        length = bundle.config.windows.length
        total += weight * predict_series(
            bundle.model,
            features,
            length,
            stride or bundle.config.windows.valid_stride,
            batch_size=batch_size,
            device=device,
        )
    return (total / sum(weights)).astype(np.float32)


def infer(cfg: Config) -> Path:
    """03_infer: predict every series of `infer.phase` with the bundles, post-process, write a
    validated submission.csv (and score it when the phase has labels). Returns its path.
    With `infer.baseline`, a heuristic makes the candidates instead (`infer_baseline`)."""
    if cfg.infer.baseline is not None:
        return infer_baseline(cfg)
    device = pick_device()
    bundles, weights = ensemble_bundles(cfg, device)
    outside = outside_bundles(cfg, device)
    _same_features(bundles + outside)
    manifest = _prepared(cfg, bundles[0].config.prepare.features)
    postprocess = _postprocess(cfg)
    out = cfg.exp_dir / "infer" / cfg.infer.phase
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
    from sleepdetect.hdcza import build_baseline, candidate_trace, features_for

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
    manifest = _prepared(cfg, features_for(cfg.infer.baseline, baseline, cfg.prepare.features))
    out = cfg.exp_dir / "infer" / cfg.infer.phase
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
    from sleepdetect.hdcza import build_baseline, candidate_trace

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
    from sleepdetect.submission import write_submission

    (out / RECORD).unlink(missing_ok=True)  # no record: no submission of these inputs yet
    submission = write_submission(
        pl.concat(candidates), out / "submission.csv", series_lengths=manifest.lengths
    )
    write_json(out / RECORD, record)
    if cfg.infer.copy_to:
        with atomic_path(cfg.infer.copy_to) as tmp:
            shutil.copyfile(submission, tmp)
        print(f"submission copied to {cfg.infer.copy_to}")
    if manifest.events is not None:
        _score(manifest, submission, traces, out)
    return submission


def series_scores(
    cfg: Config,
    bundles: list[Bundle],
    weights: list[float],
    outside: list[Bundle],
    features: np.ndarray,
    device: str | torch.device,
) -> np.ndarray:
    """(steps, 2) scores of one series as 03_infer makes them: the fold bundles' weighted mean,
    blended with the outside bundles'."""
    batch = cfg.infer.batch_size
    s = ensemble_scores(bundles, weights, features, cfg.infer.stride, batch, device)
    return blend_outside(s, outside, cfg.ensemble.outside_weight, features, batch, device)


def outside_bundles(cfg: Config, device: str | torch.device = "cpu") -> list[Bundle]:
    """`ensemble.outside`, refused when one was trained on this experiment's data.dir (its
    scores of these nights would not be out-of-fold)."""
    bundles = [load_bundle(p, device) for p in cfg.ensemble.outside]
    here = Path(cfg.data.dir).resolve()
    for b in bundles:
        if Path(b.config.data.dir).resolve() == here:
            raise ConfigError(
                f"ensemble.outside: {b.path} was trained on data.dir={b.config.data.dir}, this "
                "experiment's data; an outside bundle must have seen none of it (name it in "
                "infer.bundles to average it at inference only)"
            )
    return bundles


def blend_outside(
    scores: np.ndarray,
    outside: list[Bundle],
    weight: float,
    features: np.ndarray,
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    """(steps, 2) `scores` of the fold models blended with the outside bundles' mean."""
    if not outside:
        return scores
    other = ensemble_scores(outside, [1.0] * len(outside), features, None, batch_size, device)
    return ((1 - weight) * scores + weight * other).astype(np.float32)


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
            {"path": str(b.path), "model_sha256": file_hash(b.path / "model.pt"), "share": w}
            for b, w in zip(bundles + outside, shares, strict=True)
        ],
        "data": manifest.sources,
        "postprocess": to_dict(postprocess),
    }


def pick_device() -> torch.device:
    """The GPU when there is one; on CPU, every core."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    return device


def ensemble_bundles(cfg: Config, device: torch.device) -> tuple[list[Bundle], list[float]]:
    """The fold bundles to average (`infer.bundles`, or this experiment's) and their weights."""
    bundles = [load_bundle(p, device) for p in find_bundles(cfg)]
    weights = cfg.infer.weights or [1.0] * len(bundles)
    if len(weights) != len(bundles):
        raise InputError(f"infer.weights has {len(weights)} values for {len(bundles)} bundles")
    return bundles, weights


def _same_features(bundles: list[Bundle]) -> None:
    features = bundles[0].config.prepare.features
    for b in bundles[1:]:
        if b.config.prepare.features != features:
            raise InputError(
                f"bundles {bundles[0].path} and {b.path} were trained on different features; "
                "ensemble bundles of one feature set"
            )


def _prepared(cfg: Config, features: list[str]) -> Manifest:
    """The prepared `infer.phase` of `data.dir` with the bundles' features, prepared again when
    the folder holds other data or features (say, data.dir points elsewhere now)."""
    phase = cfg.infer.phase
    root = cfg.exp_dir / "prepared" / phase
    if (root / MANIFEST).is_file():
        manifest = Manifest.load(root)
        reason = stale_reason(manifest, Path(cfg.data.dir), phase, features)
        if reason is None:
            return manifest
        print(f"{root}: prepared again: {reason}")
    return prepare(replace(cfg, prepare=replace(cfg.prepare, phase=phase, features=list(features))))


def _postprocess(cfg: Config) -> PostprocessConfig:
    """The postprocess section, or the settings `tune` chose (`infer.tuned`)."""
    if not cfg.infer.tuned:
        return cfg.postprocess
    from sleepdetect.tune import load_tuned

    print(f"post-processing chosen by tune: {cfg.exp_dir / 'tune'}")
    return load_tuned(cfg.exp_dir)


def _labelled(manifest: Manifest) -> pl.DataFrame:
    return manifest.read_events().filter(pl.col("step").is_not_null())


def _plotted_series(manifest: Manifest) -> set[str]:
    """The series of the nights nights.png shows: only their per-step scores are kept (all of
    them would be about 1 GB at competition scale)."""
    from sleepdetect.plots import night_picks

    if manifest.events is None:
        return set()
    return set(night_picks(_labelled(manifest))["series_id"])


def _score(manifest: Manifest, submission: Path, traces: dict[str, np.ndarray], out: Path) -> None:
    """Score the submission against the phase's labels (metrics.csv) and plot a few nights."""
    from sleepdetect.metric import event_detection_ap_table
    from sleepdetect.plots import plot_nights
    from sleepdetect.scoring import write_metrics

    solution = _labelled(manifest)
    candidates = pl.read_csv(submission)
    table, score = event_detection_ap_table(solution, candidates)
    write_metrics(table, score, out / "metrics.csv")
    print(f"score against {manifest.root / manifest.events}: {score:.4f}")
    if traces:
        per_step = pl.concat(score_frame(sid, s) for sid, s in traces.items())
        plot_nights(per_step, solution, candidates, out / "nights.png")
