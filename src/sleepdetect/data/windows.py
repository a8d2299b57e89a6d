"""Training data without Lightning: labels per series, folds (splits), and the windows drawn
from memory-mapped arrays each epoch.

Folds (`split_segments`): `series` puts whole series in folds; `nights` cuts every series
between its labelled nights into contiguous blocks, one block per fold, with a margin; `time`
validates the last share of each series. A training window never holds a validation step: it
is drawn inside one training segment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset, Sampler

from sleepdetect.config import ConfigError
from sleepdetect.data.prepare import Manifest
from sleepdetect.data.targets import WindowEvents, build_targets

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

    def window(self, start: int, length: int, stop: int | None = None) -> WindowEvents:
        """Events of [start, min(start + length, stop)) in steps from `start`; the sleep
        intervals that touch it keep their true ends (targets clip them) unless `stop` cuts
        them: past `stop` (the end of a training segment) the window is padding and knows
        nothing."""
        end = start + length if stop is None else min(start + length, stop)

        def inside(steps: np.ndarray) -> tuple[int, ...]:
            return tuple(int(s - start) for s in steps[(steps >= start) & (steps < end)])

        touching = self.intervals[(self.intervals[:, 1] > start) & (self.intervals[:, 0] < end)]
        if end < start + length:  # a cut segment: nothing is known past its end
            touching = np.minimum(touching, end)
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


def night_cuts(events: pl.DataFrame, n_steps: int) -> np.ndarray:
    """Cut steps between the labelled nights of one series: 0, the midpoint between the last
    event of each labelled night and the first event of the next, and `n_steps`. Piece i is
    [cuts[i], cuts[i + 1]) and holds labelled night i whole (nights without events fall in a
    gap). A series without labels is one piece."""
    ev = events.filter(pl.col("step").is_not_null())
    if ev.is_empty():
        return np.array([0, n_steps], np.int64)
    nights = ev.group_by("night").agg(
        pl.col("step").min().alias("a"), pl.col("step").max().alias("b")
    )
    nights = nights.sort("a")
    a, b = nights["a"].to_numpy(), nights["b"].to_numpy()
    mid = (b[:-1] + a[1:]) // 2
    return np.concatenate([[0], mid, [n_steps]]).astype(np.int64)


def split_segments(
    manifest: Manifest,
    labels: dict[str, SeriesLabels],
    kind: str,
    n_folds: int,
    fold: int,
    valid_fraction: float,
    seed: int,
    events: pl.DataFrame | None = None,
    margin: int = 0,
) -> tuple[list[Segment], list[Segment]]:
    """(train, valid) segments of fold `fold`.

    `series`: fold `fold` of `n_folds` folds of whole series (group k-fold by series).
    `nights`: each series' labelled nights (see `night_cuts`, needs `events`) go to `n_folds`
    contiguous blocks; block `fold` validates, the rest trains, less `margin` steps on each
    side of the validation block, so that no training window touches it.
    `time`: each series' first nights train and its last `valid_fraction` validates, cut in a
    gap between nights so that no night is in both.
    """
    lengths = manifest.lengths
    if kind in ("series", "nights") and (not 0 <= fold < n_folds or n_folds < 2):
        raise ConfigError(f"split: need n_folds >= 2 and 0 <= fold < n_folds, got {fold}/{n_folds}")
    if kind == "series":
        ids = sorted(lengths)
        if len(ids) < n_folds:
            raise ConfigError(
                f"split.n_folds={n_folds} but the data hold {len(ids)} series; lower n_folds or "
                "use split.kind=nights for one or few series"
            )
        order = np.random.default_rng(seed).permutation(len(ids))
        valid_ids = {ids[i] for i in order[fold::n_folds]}
        train = [Segment(s, 0, lengths[s]) for s in ids if s not in valid_ids]
        valid = [Segment(s, 0, lengths[s]) for s in ids if s in valid_ids]
        return train, valid
    if kind == "nights":
        if events is None:
            raise ValueError("split kind 'nights' needs the events")
        train, valid = [], []
        for sid, n in sorted(lengths.items()):
            cuts = night_cuts(events.filter(pl.col("series_id") == sid), n)
            n_nights = len(cuts) - 1
            # night i goes to fold i * n_folds // n_nights: contiguous blocks whose sizes differ
            # by at most one; a series with fewer nights than folds sits out some folds
            block = np.flatnonzero(np.arange(n_nights) * n_folds // n_nights == fold)
            if block.size == 0:
                train.append(Segment(sid, 0, n))
                continue
            a, b = int(cuts[block[0]]), int(cuts[block[-1] + 1])
            valid.append(Segment(sid, a, b))
            if a - margin > 0:
                train.append(Segment(sid, 0, a - margin))
            if b + margin < n:
                train.append(Segment(sid, b + margin, n))
        if not valid:
            most = max(
                len(night_cuts(events.filter(pl.col("series_id") == s), 1)) - 1 for s in lengths
            )
            raise ConfigError(
                f"split.n_folds={n_folds} but the series have at most {most} labelled nights: "
                f"fold {fold} validates nothing; lower split.n_folds"
            )
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


def fold_count(kind: str, n_folds: int) -> int:
    """How many folds a split kind has: `time` has one."""
    return 1 if kind == "time" else n_folds


# ---------------------------------------------------------------- training windows


class WindowSampler(Sampler[tuple[int, int, int, int]]):
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
        """(per_epoch, 3) [series index, start step, stop step] of one epoch's windows; stop is
        the end of the window's segment when the segment is shorter than a window (the dataset
        pads past it, so a window never reads a step of another fold)."""
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
        stop = np.minimum(start + self.length, self.seg_end[seg])
        out = np.stack([self.seg_series[seg], start, stop], axis=1)
        return out[rng.permutation(len(out))]

    def __iter__(self):
        for series, start, stop in self.draw(self.epoch):
            yield int(series), int(start), int(stop), self.epoch


class MixedSampler(Sampler[tuple[int, int, int, int]]):
    """Each epoch's windows from several samplers at once (the real nights and, say, synthetic
    series), each drawing its own count, shuffled together. Sampler i's series indices are
    shifted by `offsets[i]`, so that one dataset holds every series."""

    def __init__(self, samplers: list[WindowSampler], offsets: list[int], seed: int) -> None:
        self.samplers, self.offsets, self.seed = samplers, offsets, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(s.per_epoch for s in self.samplers)

    def draw(self, epoch: int) -> np.ndarray:
        """(len, 3) [series index, start step, stop step], as WindowSampler.draw."""
        rows = [s.draw(epoch) + [o, 0, 0] for s, o in zip(self.samplers, self.offsets, strict=True)]
        out = np.concatenate(rows)
        return out[np.random.default_rng([self.seed, epoch, 1]).permutation(len(out))]

    def __iter__(self):
        for series, start, stop in self.draw(self.epoch):
            yield int(series), int(start), int(stop), self.epoch


def series_labels(manifest: Manifest, events: pl.DataFrame) -> dict[str, SeriesLabels]:
    """The labels of every series of `manifest`, by series id."""
    return {
        s.series_id: SeriesLabels.from_events(events.filter(pl.col("series_id") == s.series_id))
        for s in manifest.series
    }


def whole_series(manifest: Manifest) -> tuple[list[Segment], dict[str, SeriesLabels]]:
    """Every series of `manifest` as one training segment, with its labels."""
    labels = series_labels(manifest, manifest.read_events())
    return [Segment(s.series_id, 0, s.n_steps) for s in manifest.series], labels


class WindowDataset(Dataset):
    """(series index, start[, stop[, epoch]]) -> (features (F, length) float32, targets of the
    model's kind), read from memory-mapped arrays; a window running past a series' end or past
    `stop` (its segment's end) is edge-padded. With `sigma_final`, the event targets narrow
    from `sigma` to it over `epochs` (the 1st place's targets that tighten as training goes);
    the epoch comes with the item, so worker processes agree."""

    def __init__(
        self,
        features: list[np.ndarray],
        labels: list[SeriesLabels],
        length: int,
        target_kind: str,
        downsample_rate: int,
        sigma: float,
        sigma_final: float | None = None,
        epochs: int = 1,
    ) -> None:
        self.features, self.labels = features, labels
        self.length, self.target_kind = length, target_kind
        self.downsample_rate, self.sigma = downsample_rate, sigma
        self.sigma_final, self.epochs = sigma_final, epochs

    def sigma_at(self, epoch: int) -> float:
        """Target width in epoch `epoch`: linear from `sigma` (first) to `sigma_final` (last)."""
        if self.sigma_final is None:
            return self.sigma
        done = min(epoch / max(self.epochs - 1, 1), 1.0)
        return self.sigma + (self.sigma_final - self.sigma) * done

    def __getitem__(self, item: tuple[int, ...]) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
        series, start = item[:2]
        stop = item[2] if len(item) > 2 else start + self.length
        epoch = item[3] if len(item) > 3 else 0
        x = np.asarray(self.features[series][start:stop], dtype=np.float32)
        if len(x) < self.length:
            x = np.concatenate([x, np.repeat(x[-1:], self.length - len(x), axis=0)])
        targets = build_targets(
            self.target_kind,
            self.labels[series].window(start, self.length, stop),
            downsample_rate=self.downsample_rate,
            sigma=self.sigma_at(epoch),
        )
        return torch.from_numpy(np.ascontiguousarray(x.T)), targets
