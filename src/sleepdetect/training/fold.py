"""One fold model trained and exported as a bundle, and the records that say whether a fold
folder is still of this config and data.

Requires the train folder of 01_prepare. Writes, in the fold's folder (experiment.py):
  model.pt, config.yaml           the bundle: plain state_dict + resolved config (no Lightning)
  inputs.json                     what else it was trained from (data, init_from, extra series)
  metrics.csv                     AP of every event x tolerance on the fold's validation data
  oof.parquet                     out-of-fold per-step scores (series_id, step, onset, wakeup)
  log/metrics.csv                 loss (and validation score) per step/epoch (CSV log)
  curves.png, nights.png          loss and score curves; predicted vs true events of a few nights
  checkpoints/                    best.ckpt (by validation score) and last.ckpt (to resume)
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import lightning as L
import polars as pl
import torch

from sleepdetect.config import Config, ConfigError, load_config, save_config, to_dict
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import atomic_path
from sleepdetect.core.records import check_record, write_record
from sleepdetect.data.prepare import Manifest, open_prepared
from sleepdetect.events.candidates import score_frame
from sleepdetect.events.scoring import write_metrics
from sleepdetect.experiment import FOLD_OOF, MODEL_FILE, Experiment, model_sha256
from sleepdetect.inference.bundles import load_bundle
from sleepdetect.models import build_model
from sleepdetect.models.base import SleepModel
from sleepdetect.plots import plot_nights, plot_training_curves
from sleepdetect.training.data import SleepDataModule
from sleepdetect.training.system import SleepModule
from sleepdetect.training.trainer import make_trainer
from sleepdetect.training.validator import Validator

INPUTS_RECORD = "inputs.json"


def extra_manifests(cfg: Config, manifest: Manifest) -> list[Manifest]:
    """The prepared train series of `windows.extra`: same features as this experiment's, and
    not its data (those nights would be trained on in every fold)."""
    out = []
    for folder in cfg.windows.extra:
        other = Manifest.load(Experiment(folder).prepared("train"))
        if other.feature_names != manifest.feature_names:
            raise ConfigError(
                f"windows.extra: {other.root} has features {other.feature_names}, this "
                f"experiment {manifest.feature_names}; prepare it with the same features"
            )
        if other.sources["series"]["fingerprint"] == manifest.sources["series"]["fingerprint"]:
            raise ConfigError(
                f"windows.extra: {other.root} holds this experiment's own series; extra series "
                "must be other data (they train in every fold)"
            )
        out.append(other)
    return out


def fold_inputs(cfg: Config, manifest: Manifest) -> dict:
    """What a fold is trained from besides its config: the prepared data's sources, the
    `init_from` weights and the `windows.extra` series. Recorded beside the bundle; a change
    retrains the fold."""
    # None when missing: train() stops with the reason
    init = model_sha256(cfg.model.init_from) if cfg.model.init_from else None
    data = {name: record["fingerprint"] for name, record in manifest.sources.items()}
    extra = {
        str(m.root): m.sources["series"]["fingerprint"] for m in extra_manifests(cfg, manifest)
    }
    return {"data": data, "init_from": init, "extra": extra}


# What a fold model does not depend on: changing these keeps the trained folds (the data's
# content is checked by inputs.json, not by where it lies; a renamed experiment is the same).
_NOT_FOLD_KEYS = ("exp_name", "data", "output", "infer", "ensemble", "tune", "kaggle")


_NOT_FOLD_TRAINER_KEYS = ("seeds", "fold_workers", "logger")


def fold_dict(cfg: Config) -> dict:
    d = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_FOLD_KEYS}
    d["trainer"] = {k: v for k, v in d["trainer"].items() if k not in _NOT_FOLD_TRAINER_KEYS}
    return d


def _same_run(fold_dir: Path, cfg: Config, inputs: dict) -> bool:
    """The fold folder was written with this config (the keys a fold depends on) and these
    inputs."""
    config = fold_dir / "config.yaml"
    if not config.is_file():
        return False
    try:
        old = load_config(config)
    except ConfigError:  # it names what no longer loads (init_from now an ensemble): stale
        return False
    same_config = fold_dict(old) == fold_dict(cfg)
    return same_config and check_record(fold_dir / INPUTS_RECORD, inputs) is None


def trained_with(fold_dir: Path, cfg: Config, inputs: dict) -> bool:
    """The fold is complete, of this config and these inputs (retrained pretraining weights
    or a changed data file make it stale)."""
    complete = (fold_dir / MODEL_FILE).is_file() and (fold_dir / FOLD_OOF).is_file()
    return complete and _same_run(fold_dir, cfg, inputs)


def _init_weights(model: SleepModel, path: str, feature_names: list[str]) -> None:
    """`model.init_from`: start from another bundle's weights (same architecture, features)."""
    if not (Path(path) / MODEL_FILE).is_file():
        raise InputError(
            f"model.init_from={path}: no trained bundle there; train it first, start from the "
            "shipped model (model.init_from=shipped:day_gru_synth) or set model.init_from=null"
        )
    source = load_bundle(path)
    if source.config.prepare.features != feature_names:
        raise InputError(
            f"model.init_from={path}: that bundle was trained on features "
            f"{source.config.prepare.features}, this run prepares {feature_names}; use the same "
            "prepare.features"
        )
    try:
        model.load_state_dict(source.model.state_dict())
    except RuntimeError as e:
        raise InputError(
            f"model.init_from={path}: its weights do not fit this model "
            f"({source.config.model.name} there, {type(model).__name__} here; check model.*): "
            f"{str(e).splitlines()[0]}"
        ) from e


def train(cfg: Config, member: int = 0, callbacks: Sequence[L.Callback] = ()) -> Path:
    """Train model `member` (seed `cfg.seed + member`; the split keeps `cfg.seed`) of fold
    `cfg.split.fold` (None: fold 0); returns its folder (the bundle and its reports).
    `callbacks` run after the trainer's own (a timer, say: bench/scale.py's StepTimer)."""
    if cfg.split.fold is None:
        cfg = replace(cfg, split=replace(cfg.split, fold=0))
    manifest = open_prepared(cfg)
    L.seed_everything(cfg.seed + member, workers=True, verbose=False)
    model = build_model(cfg.model, in_channels=len(manifest.feature_names))
    if cfg.model.init_from:
        _init_weights(model, cfg.model.init_from, manifest.feature_names)
    mixing = cfg.augment.mixup_prob or cfg.augment.cutmix_prob or cfg.augment.reverse_prob
    if mixing and model.target_kind != "segmentation":
        raise ConfigError(
            f"augment: mixup/cutmix/reverse need segmentation targets, not {model.target_kind}"
        )
    data = SleepDataModule(
        manifest,
        cfg.split,
        cfg.windows,
        model.target_kind,
        model.downsample_rate,
        cfg.trainer.batch_size,
        cfg.trainer.num_workers,
        cfg.seed,
        cfg.seed + member,
        extra_manifests(cfg, manifest),
        cfg.trainer.max_epochs,
    )
    fold_dir = Experiment.of(cfg).fold(cfg.split.fold, member)
    fold_dir.mkdir(parents=True, exist_ok=True)
    last = fold_dir / "checkpoints" / "last.ckpt"
    inputs = fold_inputs(cfg, manifest)
    if last.is_file() and not _same_run(fold_dir, cfg, inputs):
        print(f"{last} was written with another config or data: training fold afresh")
        shutil.rmtree(fold_dir / "checkpoints")
    save_config(cfg, fold_dir / "config.yaml")
    write_record(fold_dir / INPUTS_RECORD, inputs)
    validator = Validator(
        manifest,
        data.valid_segments,
        data.events,
        cfg.windows.length,
        cfg.windows.valid_stride,
        cfg.trainer.batch_size,
        cfg.postprocess,
    )
    module = SleepModule(
        model,
        validator,
        cfg.optimizer.lr,
        cfg.optimizer.weight_decay,
        cfg.optimizer.warmup_fraction,
        cfg.augment,
        cfg.seed + member,
    )
    trainer = make_trainer(cfg, fold_dir, callbacks)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.is_file() else None)
    if trainer.global_rank == 0:
        best = (
            trainer.checkpoint_callback.best_model_path if cfg.trainer.checkpoint == "best" else ""
        )
        export_bundle(module, best, validator, fold_dir)
    return fold_dir


def export_bundle(module: SleepModule, best: str, validator: Validator, fold_dir: Path) -> None:
    """The weights of checkpoint `best` (empty: the module's last weights) as a plain
    state_dict beside the config, with the out-of-fold scores, the metric table and the plots.
    model.pt is written last: its presence means the fold is complete."""
    model = module.model
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(
            {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        )
    model = model.cpu()
    (fold_dir / MODEL_FILE).unlink(missing_ok=True)

    device = torch.device("cpu")
    oof, candidates = [], []
    for seg in validator.segments:
        scores = validator.predict(model, seg, device)
        candidates.append(validator.candidates(seg, scores))
        oof.append(score_frame(seg.series_id, scores, seg.start))
    with atomic_path(fold_dir / FOLD_OOF) as tmp:
        pl.concat(oof).write_parquet(tmp)
    table, score = validator.score(pl.concat(candidates))
    write_metrics(table, score, fold_dir / "metrics.csv")
    plot_training_curves(
        sorted((fold_dir / "log").glob("version_*/metrics.csv")), fold_dir / "curves.png"
    )
    plot_nights(pl.concat(oof), validator.solution, pl.concat(candidates), fold_dir / "nights.png")
    save_weights(model.state_dict(), fold_dir / MODEL_FILE)


def save_weights(state: dict[str, torch.Tensor], path: Path) -> Path:
    """`state` as a torch file at `path`, written atomically. Through a file object, so the
    archive inside is named `archive`, not after the temporary file: the same weights give
    the same bytes, whichever process wrote them."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
    return path
