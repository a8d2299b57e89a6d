"""The LightningModule: a plain SleepModel trained with augmentations, per-step seeds and a
warm-up then cosine schedule, and validated by the Validator."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import polars as pl
import torch

from sleepdetect.config import AugmentConfig
from sleepdetect.models.base import SleepModel
from sleepdetect.training.augment import cutmix, mixup, partners, reverse
from sleepdetect.training.validator import Validator


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
            x, targets["labels"] = reverse(x, targets["labels"], self.augment.reverse_prob)
        aug = self.augment
        if self.model.target_kind == "segmentation" and (aug.mixup_prob or aug.cutmix_prob):
            partner = partners(x.shape[0]).to(x.device)
            if aug.mixup_prob and torch.rand(()) < aug.mixup_prob:
                x, targets["labels"] = mixup(x, targets["labels"], partner, aug.mixup_alpha)
            if aug.cutmix_prob and torch.rand(()) < aug.cutmix_prob:
                x, targets["labels"] = cutmix(
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
