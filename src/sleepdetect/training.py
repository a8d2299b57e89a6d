"""02_train: prepared arrays -> windows + targets -> model -> Lightning -> a bundle.

Requires: the train folder of 01_prepare (`<exp>/prepared/train/manifest.json`).
Outputs, under `<output.dir>/<exp_name>/fold<k>/`:
  model.pt, config.yaml     the bundle: plain state_dict + resolved config (no Lightning needed)
  metrics.csv               the AP of every event x tolerance of the best epoch, and the score
  oof.parquet               out-of-fold per-step scores (series_id, step, onset, wakeup)
  log/metrics.csv           loss and validation score per step/epoch (CSV log)
  curves.png, nights.png    loss and score curves; predicted vs true events of a few nights
  checkpoints/              best.ckpt (by validation score) and last.ckpt (to resume)
This is the only module that imports lightning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sleepdetect.config import AugmentConfig, Config, ConfigError, save_config
from sleepdetect.data.prepare import Manifest
from sleepdetect.data.targets import WindowEvents, build_targets
from sleepdetect.files import atomic_path
from sleepdetect.inference import predict_series
from sleepdetect.metric import event_detection_ap_table, write_metrics
from sleepdetect.models import build_model
from sleepdetect.models.base import SleepModel
from sleepdetect.postprocess import series_candidates

# ---------------------------------------------------------------- labels and splits


@dataclass(frozen=True)
class SeriesLabels:
    """Event steps of one series, sorted; `intervals` are the nights with both events."""

    onsets: np.ndarray  # (k,) int64
    wakeups: np.ndarray  # (m,) int64
    intervals: np.ndarray  # (n, 2) int64, [onset, wakeup)

    @classmethod
    def from_events(cls, events: pl.DataFrame) -> SeriesLabels:
        ev = events.filter(pl.col("step").is_not_null())
        onsets = np.sort(ev.filter(pl.col("event") == "onset")["step"].to_numpy())
        wakeups = np.sort(ev.filter(pl.col("event") == "wakeup")["step"].to_numpy())
        nights = ev.pivot(on="event", index="night", values="step")
        if {"onset", "wakeup"} <= set(nights.columns):
            pairs = nights.drop_nulls(["onset", "wakeup"]).filter(
                pl.col("onset") < pl.col("wakeup")
            )
            intervals = pairs.select("onset", "wakeup").to_numpy().astype(np.int64)
        else:
            intervals = np.zeros((0, 2), np.int64)
        return cls(onsets.astype(np.int64), wakeups.astype(np.int64), intervals.reshape(-1, 2))

    def window(self, start: int, length: int) -> WindowEvents:
        """Events of [start, start + length) in steps from `start`; the sleep intervals that
        touch the window keep their true ends (targets clip them)."""
        end = start + length

        def inside(steps: np.ndarray) -> tuple[int, ...]:
            return tuple(int(s - start) for s in steps[(steps >= start) & (steps < end)])

        touching = self.intervals[(self.intervals[:, 1] > start) & (self.intervals[:, 0] < end)]
        return WindowEvents(
            n_steps=length,
            onsets=inside(self.onsets),
            wakeups=inside(self.wakeups),
            sleep_intervals=tuple((int(a - start), int(b - start)) for a, b in touching),
        )


@dataclass(frozen=True)
class Segment:
    """Steps [start, end) of one series: a stretch that trains or validates."""

    series_id: str
    start: int
    end: int


def split_segments(
    manifest: Manifest,
    labels: dict[str, SeriesLabels],
    kind: str,
    n_folds: int,
    fold: int,
    valid_fraction: float,
    seed: int,
) -> tuple[list[Segment], list[Segment]]:
    """(train, valid) segments. `series`: fold `fold` of `n_folds` folds of whole series.
    `time`: each series' first nights train and its last `valid_fraction` validates, cut in
    a gap between nights so that no night is in both."""
    lengths = manifest.lengths
    if kind == "series":
        if not 0 <= fold < n_folds or n_folds < 2:
            raise ConfigError(
                f"split: need n_folds >= 2 and 0 <= fold < n_folds, got {fold}/{n_folds}"
            )
        ids = sorted(lengths)
        if len(ids) < n_folds:
            raise ConfigError(
                f"split.n_folds={n_folds} but the data hold {len(ids)} series; lower n_folds or "
                "use split.kind=time for a single series"
            )
        order = np.random.default_rng(seed).permutation(len(ids))
        valid_ids = {ids[i] for i in order[fold::n_folds]}
        train = [Segment(s, 0, lengths[s]) for s in ids if s not in valid_ids]
        valid = [Segment(s, 0, lengths[s]) for s in ids if s in valid_ids]
        return train, valid
    if not 0 < valid_fraction < 1:
        raise ConfigError(f"split.valid_fraction must be in (0, 1), got {valid_fraction}")
    train, valid = [], []
    for sid, n in sorted(lengths.items()):
        cut = int(n * (1 - valid_fraction))
        for onset, wakeup in labels[sid].intervals:
            if onset <= cut < wakeup:  # never split a night: cut where it ends
                cut = int(wakeup)
        train.append(Segment(sid, 0, cut))
        valid.append(Segment(sid, cut, n))
    return train, valid


# ---------------------------------------------------------------- training windows


class WindowSampler(Sampler[tuple[int, int]]):
    """Draws each epoch's windows at once with numpy: `event_ratio` of them contain a labelled
    event at a random position, the rest start anywhere in a training segment (so series and
    nights without events still teach what wake and non-wear look like). Draws depend only on
    (seed, epoch), so runs repeat and every DDP rank sees the same list before sharding."""

    def __init__(
        self,
        segments: list[Segment],
        series_index: dict[str, int],
        labels: dict[str, SeriesLabels],
        length: int,
        per_epoch: int,
        event_ratio: float,
        seed: int,
    ) -> None:
        self.length, self.per_epoch, self.event_ratio, self.seed = (
            length,
            per_epoch,
            event_ratio,
            seed,
        )
        self.epoch = 0
        self.seg_series = np.array([series_index[s.series_id] for s in segments], np.int64)
        self.seg_start = np.array([s.start for s in segments], np.int64)
        self.seg_end = np.array([s.end for s in segments], np.int64)
        ev_seg, ev_step = [], []
        for i, seg in enumerate(segments):
            lab = labels[seg.series_id]
            steps = np.concatenate([lab.onsets, lab.wakeups])
            steps = steps[(steps >= seg.start) & (steps < seg.end)]
            ev_seg.append(np.full(len(steps), i))
            ev_step.append(steps)
        self.event_segment = np.concatenate(ev_seg) if ev_seg else np.zeros(0, np.int64)
        self.event_step = np.concatenate(ev_step) if ev_step else np.zeros(0, np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_epoch

    def draw(self, epoch: int) -> np.ndarray:
        """(per_epoch, 2) [series index, start step] of one epoch's windows."""
        rng = np.random.default_rng([self.seed, epoch])
        n_event = round(self.per_epoch * self.event_ratio) if len(self.event_step) else 0
        pick = rng.integers(0, len(self.event_step), n_event) if n_event else np.zeros(0, int)
        seg = self.event_segment[pick]
        start = self.event_step[pick] - rng.integers(0, self.length, n_event)
        lengths = self.seg_end - self.seg_start
        bg_seg = rng.choice(len(lengths), self.per_epoch - n_event, p=lengths / lengths.sum())
        bg_start = self.seg_start[bg_seg] + (
            rng.random(len(bg_seg)) * np.maximum(lengths[bg_seg] - self.length, 1)
        ).astype(np.int64)
        seg = np.concatenate([seg, bg_seg])
        start = np.concatenate([start, bg_start])
        # keep each window inside its segment (a segment shorter than a window starts at 0)
        start = np.clip(
            start,
            self.seg_start[seg],
            np.maximum(self.seg_end[seg] - self.length, self.seg_start[seg]),
        )
        out = np.stack([self.seg_series[seg], start], axis=1)
        return out[rng.permutation(len(out))]

    def __iter__(self):
        for series, start in self.draw(self.epoch):
            yield int(series), int(start)


class WindowDataset(Dataset):
    """(series index, start) -> (features (F, length) float32, targets of the model's kind),
    read from memory-mapped arrays; windows running past a series' end are edge-padded."""

    def __init__(
        self,
        features: list[np.ndarray],
        labels: list[SeriesLabels],
        length: int,
        target_kind: str,
        output_stride: int,
        sigma: float,
    ) -> None:
        self.features, self.labels = features, labels
        self.length, self.target_kind = length, target_kind
        self.output_stride, self.sigma = output_stride, sigma

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        series, start = item
        x = np.asarray(self.features[series][start : start + self.length], dtype=np.float32)
        if len(x) < self.length:
            x = np.concatenate([x, np.repeat(x[-1:], self.length - len(x), axis=0)])
        targets = build_targets(
            self.target_kind,
            self.labels[series].window(start, self.length),
            downsample_rate=self.output_stride,
            sigma=self.sigma,
        )
        return torch.from_numpy(np.ascontiguousarray(x.T)), targets


# ---------------------------------------------------------------- validation


class Validator:
    """Scores a model on whole validation segments exactly as inference will: overlapping
    windows, post-processing, the competition metric."""

    def __init__(
        self, manifest: Manifest, segments: list[Segment], events: pl.DataFrame, cfg: Config
    ) -> None:
        self.manifest, self.segments, self.cfg = manifest, segments, cfg
        self.first_ts = {s.series_id: s.first_timestamp for s in manifest.series}
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
            model,
            feats,
            self.cfg.windows.length,
            self.cfg.windows.valid_stride,
            batch_size=self.cfg.trainer.batch_size,
            device=device,
        )
        return scores[segment.start : segment.end]

    def candidates(self, segment: Segment, scores: np.ndarray) -> pl.DataFrame:
        full = np.zeros((self.manifest.lengths[segment.series_id], 2), np.float32)
        full[segment.start : segment.end] = scores
        day_repeat = self.manifest.feature(segment.series_id, "day_repeat")
        return series_candidates(
            full,
            segment.series_id,
            self.first_ts[segment.series_id],
            self.cfg.postprocess,
            day_repeat,
        )

    def score(self, candidates: pl.DataFrame) -> tuple[pl.DataFrame, float]:
        if self.solution.is_empty():
            return pl.DataFrame(), float("nan")
        return event_detection_ap_table(self.solution, candidates)


# ---------------------------------------------------------------- the Lightning glue


def _mix(
    x: torch.Tensor, labels: torch.Tensor, stride: int, augment: AugmentConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (blend two windows and their soft labels by lam ~ Beta) or cutmix (paste a
    stretch of another window; its labels follow frame by frame, so the weights are exact)."""
    perm = torch.randperm(x.shape[0], device=x.device)
    if augment.mixup_prob and torch.rand(()) < augment.mixup_prob:
        lam = float(np.random.beta(augment.mixup_alpha, augment.mixup_alpha))
        x = lam * x + (1 - lam) * x[perm]
        labels = lam * labels + (1 - lam) * labels[perm]
    if augment.cutmix_prob and torch.rand(()) < augment.cutmix_prob:
        frames = labels.shape[1]
        lam = float(np.random.beta(augment.cutmix_alpha, augment.cutmix_alpha))
        cut = int(round((1 - lam) * frames))
        a = int(np.random.randint(0, frames - cut + 1))
        x, labels = x.clone(), labels.clone()
        x[:, :, a * stride : (a + cut) * stride] = x[perm, :, a * stride : (a + cut) * stride]
        labels[:, a : a + cut] = labels[perm, a : a + cut]
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
    ) -> None:
        super().__init__()
        self.model, self.validator = model, validator
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.augment = augment
        self._candidates: list[pl.DataFrame] = []
        self.last_table: pl.DataFrame | None = None

    def forward(self, x: torch.Tensor):
        return self.model(x)  # (batch, features, steps) -> the model's output dataclass

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, targets = batch
        if self.model.target_kind == "segmentation" and (
            self.augment.mixup_prob or self.augment.cutmix_prob
        ):
            x, targets["labels"] = _mix(
                x, targets["labels"], self.model.output_stride, self.augment
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


class SleepDataModule(L.LightningDataModule):
    def __init__(
        self,
        train_set: WindowDataset,
        sampler: WindowSampler,
        n_valid_segments: int,
        batch_size: int,
        num_workers: int,
    ) -> None:
        super().__init__()
        self.train_set, self.sampler, self.n_valid = train_set, sampler, n_valid_segments
        self.batch_size, self.num_workers = batch_size, num_workers

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(list(range(self.n_valid)), batch_size=1, collate_fn=list)


# ---------------------------------------------------------------- the stage


def resolve_precision(precision: str) -> str:
    """`auto`: bf16 mixed precision on GPUs that have it, fp16 mixed on older GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def train(cfg: Config) -> Path:
    """Train fold `cfg.split.fold`; returns the fold folder (the bundle and its reports)."""
    manifest = Manifest.load(cfg.exp_dir / "prepared" / "train")
    events = manifest.read_events()
    ids = [s.series_id for s in manifest.series]
    labels = {
        sid: SeriesLabels.from_events(events.filter(pl.col("series_id") == sid)) for sid in ids
    }
    train_segs, valid_segs = split_segments(
        manifest,
        labels,
        cfg.split.kind,
        cfg.split.n_folds,
        cfg.split.fold,
        cfg.split.valid_fraction,
        cfg.seed,
    )
    fold_dir = cfg.exp_dir / f"fold{cfg.split.fold}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, fold_dir / "config.yaml")

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    model = build_model(cfg.model, in_channels=len(manifest.feature_names))
    if (cfg.augment.mixup_prob or cfg.augment.cutmix_prob) and model.target_kind != "segmentation":
        raise ConfigError(
            f"augment: mixup/cutmix need segmentation targets, not {model.target_kind}"
        )
    index = {sid: i for i, sid in enumerate(ids)}
    sampler = WindowSampler(
        train_segs,
        index,
        labels,
        cfg.windows.length,
        cfg.windows.per_epoch,
        cfg.windows.event_ratio,
        cfg.seed,
    )
    train_set = WindowDataset(
        [manifest.features(s) for s in ids],
        [labels[s] for s in ids],
        cfg.windows.length,
        model.target_kind,
        model.output_stride,
        cfg.windows.sigma,
    )
    validator = Validator(manifest, valid_segs, events, cfg)
    module = SleepModule(
        model,
        validator,
        cfg.optimizer.lr,
        cfg.optimizer.weight_decay,
        cfg.optimizer.warmup_fraction,
        cfg.augment,
    )
    data = SleepDataModule(
        train_set, sampler, len(valid_segs), cfg.trainer.batch_size, cfg.trainer.num_workers
    )
    trainer = _trainer(cfg, fold_dir)
    last = fold_dir / "checkpoints" / "last.ckpt"
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if last.is_file() else None)
    if trainer.global_rank == 0:
        export_bundle(module, trainer, validator, fold_dir)
    return fold_dir


def _trainer(cfg: Config, fold_dir: Path) -> L.Trainer:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    t = cfg.trainer
    callbacks = [
        ModelCheckpoint(
            dirpath=fold_dir / "checkpoints",
            filename="best",
            monitor="val_score",
            mode="max",
            save_top_k=1,
            save_last=False,
        ),
        ModelCheckpoint(
            dirpath=fold_dir / "checkpoints",
            filename="last",
            every_n_train_steps=t.checkpoint_every_n_steps,
            save_top_k=1,
            enable_version_counter=False,
        ),
    ]
    if t.early_stopping_patience:
        callbacks.append(
            EarlyStopping(monitor="val_score", mode="max", patience=t.early_stopping_patience)
        )
    return L.Trainer(
        max_epochs=t.max_epochs,
        max_time={"minutes": t.max_minutes} if t.max_minutes else None,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=resolve_precision(t.precision),
        gradient_clip_val=t.gradient_clip_val or None,
        callbacks=callbacks,
        logger=CSVLogger(fold_dir, name="log"),  # a resumed run logs to the next version_N
        default_root_dir=fold_dir,
        deterministic="warn",
        num_sanity_val_steps=0,
        enable_model_summary=False,
        log_every_n_steps=10,
    )


def export_bundle(
    module: SleepModule, trainer: L.Trainer, validator: Validator, fold_dir: Path
) -> None:
    """Best weights as a plain state_dict beside the config, with the out-of-fold scores,
    the metric table and the plots."""
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    model = module.model
    if best:
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(
            {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
        )
    model = model.cpu()
    with atomic_path(fold_dir / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)

    device = torch.device("cpu")
    oof, candidates = [], []
    for seg in validator.segments:
        scores = validator.predict(model, seg, device)
        candidates.append(validator.candidates(seg, scores))
        oof.append(
            pl.DataFrame(
                {
                    "series_id": seg.series_id,
                    "step": np.arange(seg.start, seg.end, dtype=np.int64),
                    "onset": scores[:, 0],
                    "wakeup": scores[:, 1],
                }
            )
        )
    with atomic_path(fold_dir / "oof.parquet") as tmp:
        pl.concat(oof).write_parquet(tmp)
    table, score = validator.score(pl.concat(candidates))
    write_metrics(table, score, fold_dir / "metrics.csv")
    from sleepdetect.plots import plot_nights, plot_training_curves

    plot_training_curves(
        sorted((fold_dir / "log").glob("version_*/metrics.csv")), fold_dir / "curves.png"
    )
    plot_nights(pl.concat(oof), validator.solution, pl.concat(candidates), fold_dir / "nights.png")
