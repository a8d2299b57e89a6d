"""One fold's data for Lightning: the split into training and validation segments, the
sampled windows with their targets, and a loader that resumes mid-epoch."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from sleepdetect.config import SplitConfig, WindowsConfig
from sleepdetect.data.prepare import Manifest
from sleepdetect.data.windows import (
    MixedSampler,
    WindowDataset,
    WindowSampler,
    series_labels,
    split_segments,
    whole_series,
)


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
