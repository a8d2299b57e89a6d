"""02_train: prepared arrays -> windows + targets -> model -> Lightning -> bundles + OOF.

Requires: the train folder of 01_prepare (`<exp>/prepared/train/manifest.json`).
Outputs, under `<output.dir>/<exp_name>/`, for each trained fold k:
  fold<k>/model.pt, config.yaml   the bundle: plain state_dict + resolved config (no Lightning)
  fold<k>/metrics.csv             AP of every event x tolerance on the fold's validation data
  fold<k>/oof.parquet             out-of-fold per-step scores (series_id, step, onset, wakeup)
  fold<k>/log/metrics.csv         loss (and validation score) per step/epoch (CSV log)
  fold<k>/curves.png, nights.png  loss and score curves; predicted vs true events of a few nights
  fold<k>/checkpoints/            best.ckpt (by validation score) and last.ckpt (to resume)
and, once every fold of `split.fold` (None: all) is trained, the out-of-fold files of oof.py.
This is the only module that imports lightning.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import lightning as L
import numpy as np
import polars as pl
import torch
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from torch.utils.data import DataLoader

from sleepdetect.candidates import predict_candidates, score_frame
from sleepdetect.config import (
    AugmentConfig,
    Config,
    ConfigError,
    PostprocessConfig,
    SplitConfig,
    WindowsConfig,
    save_config,
)
from sleepdetect.data.prepare import Manifest, load_prepared
from sleepdetect.data.windows import (
    MixedSampler,
    Segment,
    WindowDataset,
    WindowSampler,
    fold_count,
    series_labels,
    split_segments,
    whole_series,
)
from sleepdetect.errors import InputError
from sleepdetect.files import atomic_path, write_json
from sleepdetect.fingerprints import file_hash
from sleepdetect.inference import load_bundle, predict_series
from sleepdetect.metric import event_detection_ap_table
from sleepdetect.models import build_model
from sleepdetect.models.base import SleepModel
from sleepdetect.oof import member_dir
from sleepdetect.progress import bar_class
from sleepdetect.scoring import write_metrics

# ---------------------------------------------------------------- validation


class Validator:
    """Scores a model on whole validation segments exactly as inference will: overlapping
    windows, post-processing, the competition metric."""

    def __init__(
        self,
        manifest: Manifest,
        segments: list[Segment],
        events: pl.DataFrame,
        length: int,
        stride: int,
        batch_size: int,
        postprocess: PostprocessConfig,
    ) -> None:
        self.manifest, self.segments = manifest, segments
        self.length, self.stride, self.batch_size = length, stride, batch_size
        self.postprocess = postprocess
        self.solution = pl.concat(
            [
                events.filter(
                    (pl.col("series_id") == s.series_id)
                    & pl.col("step").is_between(s.start, s.end - 1)
                )
                for s in segments
            ]
        ).filter(pl.col("step").is_not_null())

    def predict(self, model: SleepModel, segment: Segment, device: torch.device) -> np.ndarray:
        """(end - start, 2) scores of a segment; the whole series gives the windows context."""
        feats = self.manifest.features(segment.series_id)
        scores = predict_series(
            model, feats, self.length, self.stride, batch_size=self.batch_size, device=device
        )
        return scores[segment.start : segment.end]

    def candidates(self, segment: Segment, scores: np.ndarray) -> pl.DataFrame:
        return predict_candidates(
            self.manifest, segment.series_id, scores, self.postprocess, segment.start
        )

    def score(self, candidates: pl.DataFrame) -> tuple[pl.DataFrame, float]:
        if self.solution.is_empty():
            return pl.DataFrame(), float("nan")
        return event_detection_ap_table(self.solution, candidates)


# ---------------------------------------------------------------- the Lightning glue


def _partners(n: int) -> torch.Tensor:
    """For each window of a batch the index of another one to mix it with (a random rotation,
    so no window is paired with itself once the batch has two)."""
    shift = int(torch.randint(1, n, ())) if n > 1 else 0
    return torch.arange(n).roll(shift)


def _mixup(
    x: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each window with its partner and the labels alike, by lam ~ Beta(alpha, alpha)."""
    lam = float(np.random.beta(alpha, alpha))
    return lam * x + (1 - lam) * x[partner], lam * labels + (1 - lam) * labels[partner]


def _cutmix(
    x: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor, alpha: float, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a stretch of the partner window (a share 1 - lam, lam ~ Beta(alpha, alpha)) of
    whole frames; its labels follow frame by frame, so they are exact."""
    frames = labels.shape[1]
    cut = int(round((1 - float(np.random.beta(alpha, alpha))) * frames))
    a = int(np.random.randint(0, frames - cut + 1))
    x, labels = x.clone(), labels.clone()
    x[:, :, a * stride : (a + cut) * stride] = x[partner, :, a * stride : (a + cut) * stride]
    labels[:, a : a + cut] = labels[partner, a : a + cut]
    return x, labels


def _reverse(
    x: torch.Tensor, labels: torch.Tensor, prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Play a share `prob` of the windows backwards: a night read in reverse falls asleep
    where it woke up, so the onset and wakeup targets swap (labels: sleep, onset, wakeup)."""
    flip = torch.rand(x.shape[0], device=x.device) < prob  # (batch,)
    if not flip.any():
        return x, labels
    x, labels = x.clone(), labels.clone()
    x[flip] = x[flip].flip(-1)  # (n, features, steps) in reverse
    labels[flip] = labels[flip].flip(1)[..., [0, 2, 1]]  # (n, frames, 3), events swapped
    return x, labels


class SleepModule(L.LightningModule):
    """Trains a plain SleepModel; only `model.state_dict()` leaves this class."""

    def __init__(
        self,
        model: SleepModel,
        validator: Validator,
        lr: float,
        weight_decay: float,
        warmup_fraction: float,
        augment: AugmentConfig,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.model, self.validator = model, validator
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.augment, self.seed = augment, seed
        self._candidates: list[pl.DataFrame] = []
        self.last_table: pl.DataFrame | None = None

    def forward(self, x: torch.Tensor):
        return self.model(x)  # (batch, features, steps) -> the model's output dataclass

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # A step's random draws (dropout, augmentations) follow from the seed and the step
        # alone, so a run resumed from a checkpoint draws what the uninterrupted run drew.
        step_seed = (self.seed * 1_000_003 + self.global_step) % 2**32
        torch.manual_seed(step_seed)
        np.random.seed(step_seed)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, targets = batch
        if self.model.target_kind == "segmentation" and self.augment.reverse_prob:
            x, targets["labels"] = _reverse(x, targets["labels"], self.augment.reverse_prob)
        aug = self.augment
        if self.model.target_kind == "segmentation" and (aug.mixup_prob or aug.cutmix_prob):
            partner = _partners(x.shape[0]).to(x.device)
            if aug.mixup_prob and torch.rand(()) < aug.mixup_prob:
                x, targets["labels"] = _mixup(x, targets["labels"], partner, aug.mixup_alpha)
            if aug.cutmix_prob and torch.rand(()) < aug.cutmix_prob:
                x, targets["labels"] = _cutmix(
                    x, targets["labels"], partner, aug.cutmix_alpha, self.model.downsample_rate
                )
        loss = self.model.loss(self.model(x), targets)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: list[int], batch_idx: int) -> None:
        for i in batch:
            segment = self.validator.segments[i]
            scores = self.validator.predict(self.model, segment, self.device)
            self._candidates.append(self.validator.candidates(segment, scores))

    def on_validation_epoch_end(self) -> None:
        candidates = _gather_frames(self._candidates)
        self._candidates = []
        table, score = self.validator.score(candidates)
        self.last_table = table
        self.log("val_score", score, prog_bar=True, sync_dist=False)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(total * self.warmup_fraction)

        def factor(step: int) -> float:  # linear warm-up, then cosine to zero
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (
                1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup)))
            )

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _gather_frames(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """All ranks' candidates (under DDP each rank validates its share of the segments)."""
    local = pl.concat(frames) if frames else pl.DataFrame()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return local
    everything: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(everything, local)
    return pl.concat([f for f in everything if f is not None and not f.is_empty()])


class _ResumingLoader(DataLoader):
    """A DataLoader whose first epoch starts after its first `skip` batches. Lightning restarts a
    plain loader's epoch at its first batch after a checkpoint taken mid-epoch, which trains
    those windows twice and never the epoch's last ones."""

    def __init__(self, *args, skip: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.skip = skip  # an attribute of the same name: Lightning rebuilds it for DDP

    def __iter__(self):
        batches = super().__iter__()
        skip, self.skip = self.skip, 0
        for _ in range(skip if skip < len(self) else 0):  # never the whole epoch
            next(batches)
        return batches


class SleepDataModule(L.LightningDataModule):
    """One fold's data: the split of the prepared series into training and validation
    segments, the sampled training windows with their targets, and the validation segments
    (by index; the Validator predicts each whole)."""

    def __init__(
        self,
        manifest: Manifest,
        split: SplitConfig,
        windows: WindowsConfig,
        target_kind: str,
        downsample_rate: int,
        batch_size: int,
        num_workers: int,
        seed: int,
        sample_seed: int,
        extra: list[Manifest] | None = None,
        epochs: int = 1,
    ) -> None:
        super().__init__()
        extra = extra or []
        self.batch_size, self.num_workers = batch_size, num_workers
        self.resume_batches = 0  # batches of the epoch a checkpoint resumed had trained
        self.events = manifest.read_events()
        ids = [s.series_id for s in manifest.series]
        labels = series_labels(manifest, self.events)
        self.train_segments, self.valid_segments = split_segments(
            manifest,
            labels,
            split.kind,
            split.n_folds,
            split.fold,
            split.valid_fraction,
            seed,
            events=self.events,
            margin=split.margin,
        )
        n_extra = round(windows.per_epoch * windows.extra_share) if extra else 0
        sampler = WindowSampler(
            self.train_segments,
            {sid: i for i, sid in enumerate(ids)},
            labels,
            windows.length,
            windows.per_epoch - n_extra,
            windows.event_ratio,
            sample_seed,
        )
        features, all_labels = [manifest.features(s) for s in ids], [labels[s] for s in ids]
        samplers, offsets = [sampler], [0]
        for i, other in enumerate(extra):  # windows.extra: whole series, training only
            segments, other_labels = whole_series(other)
            share = n_extra // len(extra) + (i < n_extra % len(extra))
            other_ids = [seg.series_id for seg in segments]
            samplers.append(
                WindowSampler(
                    segments,
                    {sid: j for j, sid in enumerate(other_ids)},
                    other_labels,
                    windows.length,
                    share,
                    windows.event_ratio,
                    sample_seed + 1 + i,
                )
            )
            offsets.append(len(features))
            features += [other.features(sid) for sid in other_ids]
            all_labels += [other_labels[sid] for sid in other_ids]
        self.sampler = sampler if not extra else MixedSampler(samplers, offsets, sample_seed)
        self.train_set = WindowDataset(
            features,
            all_labels,
            windows.length,
            target_kind,
            downsample_rate,
            windows.sigma,
            windows.sigma_final,
            epochs,
        )

    def state_dict(self) -> dict:
        """Saved in each checkpoint: the epoch and the batches of it trained, from which a
        resumed run goes on (without, Lightning restarts the epoch at its first batch)."""
        trainer = self.trainer
        if trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        finished = done >= trainer.num_training_batches
        return {"epoch": trainer.current_epoch + finished, "epoch_batches": 0 if finished else done}

    def load_state_dict(self, state: dict) -> None:
        """Restored before the training loader is made, which then draws that epoch's windows
        and skips the batches trained."""
        if "epoch" in state:
            self.sampler.set_epoch(state["epoch"])
            self.resume_batches = state["epoch_batches"]

    def train_dataloader(self) -> DataLoader:
        skip, self.resume_batches = self.resume_batches, 0
        return _ResumingLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            skip=skip,
        )

    def val_dataloader(self) -> DataLoader:
        indices = list(range(len(self.valid_segments)))
        return DataLoader(indices, batch_size=1, collate_fn=list)


# ---------------------------------------------------------------- the stage


def resolve_precision(precision: str) -> str:
    """`auto`: bf16 mixed precision on GPUs that have it, fp16 mixed on older GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def train_folds(cfg: Config) -> Path:
    """The 02_train stage: train fold `split.fold`, or every fold when it is None, each
    `trainer.seeds` times (a model already trained with this config and data is kept), then
    gather the out-of-fold predictions of every trained fold (oof.py). Returns
    `<exp>/oof.parquet`."""
    from sleepdetect.oof import gather_oof, trained_folds

    n = fold_count(cfg.split.kind, cfg.split.n_folds)
    inputs = fold_inputs(cfg, load_prepared(cfg))
    todo = []  # (fold config, member)
    for fold in trained_folds(cfg):
        fold_cfg = replace(cfg, split=replace(cfg.split, fold=fold))
        for member in range(cfg.trainer.seeds):
            folder = member_dir(cfg.exp_dir, fold, member)
            if _trained_with(folder, fold_cfg, inputs):
                print(f"{folder.name}: already trained with this config")
                save_config(fold_cfg, folder / "config.yaml")  # infer, tune... as now
            else:
                todo.append((fold_cfg, member))
    workers = min(cfg.trainer.fold_workers, len(todo))
    if workers <= 1:
        for fold_cfg, member in todo:
            print(f"fold {fold_cfg.split.fold} of {n}, seed {fold_cfg.seed + member}")
            train(fold_cfg, member)
    else:
        _train_in_processes(todo, workers)
    return gather_oof(cfg)


def _train_in_processes(todo: list[tuple[Config, int]], workers: int) -> None:
    """Folds at once in `workers` processes sharing the cores: a small recurrent model gains
    nothing from a second thread, so two one-thread folds train twice as fast as two in turn."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    configs, members = [c for c, _ in todo], [m for _, m in todo]
    print(
        f"training {len(todo)} models of folds {sorted({c.split.fold for c in configs})}, "
        f"{workers} at once"
    )
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for fold_dir in pool.map(_train_with_threads, configs, members, [threads] * len(todo)):
            print(f"trained {fold_dir}")


def _train_with_threads(cfg: Config, member: int, threads: int) -> Path:
    torch.set_num_threads(threads)
    return train(cfg, member)


INPUTS_RECORD = "inputs.json"


def extra_manifests(cfg: Config, manifest: Manifest) -> list[Manifest]:
    """The prepared train series of `windows.extra`: same features as this experiment's, and
    not its data (those nights would be trained on in every fold)."""
    out = []
    for folder in cfg.windows.extra:
        other = Manifest.load(Path(folder) / "prepared" / "train")
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
    weights = Path(cfg.model.init_from or "") / "model.pt"
    init = file_hash(weights) if cfg.model.init_from and weights.is_file() else None  # else
    # train() stops with the reason
    data = {name: record["fingerprint"] for name, record in manifest.sources.items()}
    extra = {
        str(m.root): m.sources["series"]["fingerprint"] for m in extra_manifests(cfg, manifest)
    }
    return {"data": data, "init_from": init, "extra": extra}


# What a fold model does not depend on: changing these keeps the trained folds (the data's
# content is checked by inputs.json, not by where it lies; a renamed experiment is the same).
_NOT_FOLD_KEYS = ("exp_name", "data", "output", "infer", "ensemble", "tune", "kaggle")
_NOT_FOLD_TRAINER_KEYS = ("seeds", "fold_workers", "logger")


def _fold_dict(cfg: Config) -> dict:
    from sleepdetect.config import to_dict

    d = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_FOLD_KEYS}
    d["trainer"] = {k: v for k, v in d["trainer"].items() if k not in _NOT_FOLD_TRAINER_KEYS}
    return d


def _same_run(fold_dir: Path, cfg: Config, inputs: dict) -> bool:
    """The fold folder was written with this config (the keys a fold depends on) and these
    inputs."""
    from sleepdetect.config import load_config

    config, record = fold_dir / "config.yaml", fold_dir / INPUTS_RECORD
    if not (config.is_file() and record.is_file()):
        return False
    same_config = _fold_dict(load_config(config)) == _fold_dict(cfg)
    return same_config and json.loads(record.read_text()) == inputs


def _trained_with(fold_dir: Path, cfg: Config, inputs: dict) -> bool:
    """The fold is complete, of this config and these inputs (retrained pretraining weights
    or a changed data file make it stale)."""
    complete = (fold_dir / "model.pt").is_file() and (fold_dir / "oof.parquet").is_file()
    return complete and _same_run(fold_dir, cfg, inputs)


def _init_weights(model: SleepModel, path: str, feature_names: list[str]) -> None:
    """`model.init_from`: start from another bundle's weights (same architecture, features)."""
    if not (Path(path) / "model.pt").is_file():
        raise InputError(
            f"model.init_from={path}: no trained bundle there; train it first (for the real "
            "recipe: python -m sleepdetect run params/synth-pretrain.yaml --only prepare,train) "
            "or set model.init_from=null"
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
    manifest = load_prepared(cfg)
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
    fold_dir = member_dir(cfg.exp_dir, cfg.split.fold, member)
    fold_dir.mkdir(parents=True, exist_ok=True)
    last = fold_dir / "checkpoints" / "last.ckpt"
    inputs = fold_inputs(cfg, manifest)
    if last.is_file() and not _same_run(fold_dir, cfg, inputs):
        print(f"{last} was written with another config or data: training fold afresh")
        shutil.rmtree(fold_dir / "checkpoints")
    save_config(cfg, fold_dir / "config.yaml")
    write_json(fold_dir / INPUTS_RECORD, inputs)
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
    trainer = _trainer(cfg, fold_dir, callbacks)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.is_file() else None)
    if trainer.global_rank == 0:
        best = (
            trainer.checkpoint_callback.best_model_path if cfg.trainer.checkpoint == "best" else ""
        )
        export_bundle(module, best, validator, fold_dir)
    return fold_dir


def _trainer(cfg: Config, fold_dir: Path, extra: Sequence[L.Callback] = ()) -> L.Trainer:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    t = cfg.trainer
    by_score = t.checkpoint == "best"  # `last` never validates during training
    callbacks = [
        EpochProgress(),
        ModelCheckpoint(
            dirpath=fold_dir / "checkpoints",
            filename="last",
            every_n_train_steps=t.checkpoint_every_n_steps,
            save_top_k=1,
            enable_version_counter=False,
        ),
    ]
    if by_score:
        best = ModelCheckpoint(
            dirpath=fold_dir / "checkpoints",
            filename="best",
            monitor="val_score",
            mode="max",
            save_top_k=1,
            save_last=False,
        )
        callbacks.insert(0, best)  # the first one is trainer.checkpoint_callback
    if t.early_stopping_patience and by_score:
        callbacks.append(
            EarlyStopping(monitor="val_score", mode="max", patience=t.early_stopping_patience)
        )
    trainer = L.Trainer(
        max_epochs=t.max_epochs,
        max_time={"minutes": t.max_minutes} if t.max_minutes else None,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=resolve_precision(t.precision),
        gradient_clip_val=t.gradient_clip_val or None,
        callbacks=callbacks,
        logger=_loggers(cfg, fold_dir),
        default_root_dir=fold_dir,
        deterministic="warn",
        num_sanity_val_steps=0,
        limit_val_batches=None if by_score else 0,
        enable_model_summary=False,
        # every 10 steps, or every step of an epoch shorter than that
        log_every_n_steps=max(1, min(10, cfg.windows.per_epoch // t.batch_size)),
    )
    # after the checkpoint callbacks, which Lightning moves last: a callback that stops the run
    # at a step sees that step's checkpoint written
    trainer.callbacks.extend(extra)
    return trainer


class _NoAdverts(logging.Filter):
    """Drops Lightning's tip to install its cloud logger from every run's output; its other
    messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdverts())
# Lightning 2.6 calls a torch.utils._pytree check that torch 2.9+ deprecates, once per fit;
# only that message is hidden, until Lightning no longer calls it
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class EpochProgress(ProgressBar):
    """One bar per training epoch (steps, loss, validation score) from `progress.bar_class`:
    a widget in Jupyter, text in `sleepdetect run` and terminals. Lightning's own bar is a
    widget whenever ipywidgets is installed, which shows as nothing in a papermill run."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._bar = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            total = trainer.num_training_batches
            self._bar = bar_class()(
                total=total if math.isfinite(total) else None,
                desc=f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                unit="step",
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._bar is not None:
            self._bar.set_postfix(self._shown(trainer, pl_module), refresh=False)
            self._bar.update(1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:  # validation ran before this: its score joins the bar
            self._bar.set_postfix(self._shown(trainer, pl_module))
            self._bar.close()
            self._bar = None

    def _shown(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, str]:
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the log's version number, not a figure of training
        return {k: v if isinstance(v, str) else f"{v:.4g}" for k, v in metrics.items()}


def _loggers(cfg: Config, fold_dir: Path) -> list:
    """CSV always (curves.png reads it), plus `trainer.logger`'s, imported only when chosen;
    a resumed run logs to the next version_N."""
    from lightning.pytorch.loggers import CSVLogger

    loggers = [CSVLogger(fold_dir, name="log")]
    name = cfg.trainer.logger
    if name == "csv":
        return loggers
    if importlib.util.find_spec(name) is None:  # the extra of the same name installs it
        raise ConfigError(
            f"trainer.logger={name}: {name} is not installed; pip install -e '.[{name}]' "
            "(or trainer.logger=csv)"
        )
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(fold_dir, name="tb", default_hp_metric=False))
    else:
        from lightning.pytorch.loggers import MLFlowLogger

        # a server the user already has, else one database file beside the experiments
        # (MLflow 3 no longer takes a plain folder)
        store = f"sqlite:///{(Path(cfg.output.dir) / 'mlflow.db').resolve()}"
        uri = os.environ.get("MLFLOW_TRACKING_URI") or store
        loggers.append(
            MLFlowLogger(experiment_name=cfg.exp_name, run_name=fold_dir.name, tracking_uri=uri)
        )
    return loggers


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
    (fold_dir / "model.pt").unlink(missing_ok=True)

    device = torch.device("cpu")
    oof, candidates = [], []
    for seg in validator.segments:
        scores = validator.predict(model, seg, device)
        candidates.append(validator.candidates(seg, scores))
        oof.append(score_frame(seg.series_id, scores, seg.start))
    with atomic_path(fold_dir / "oof.parquet") as tmp:
        pl.concat(oof).write_parquet(tmp)
    table, score = validator.score(pl.concat(candidates))
    write_metrics(table, score, fold_dir / "metrics.csv")
    from sleepdetect.plots import plot_nights, plot_training_curves

    plot_training_curves(
        sorted((fold_dir / "log").glob("version_*/metrics.csv")), fold_dir / "curves.png"
    )
    plot_nights(pl.concat(oof), validator.solution, pl.concat(candidates), fold_dir / "nights.png")
    with atomic_path(fold_dir / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)
