"""Training targets per model family, on the model's frame grid.

A model declares `target_kind` ("segmentation", "centernet", "detr") and `downsample_rate`; the
dataset (data/windows.WindowDataset) builds each window's targets with
`build_targets(model.target_kind, events, downsample_rate=model.downsample_rate, sigma=...)` and
the model's `loss` reads them. `max_events` (the DETR set size) is left at its default, 16,
by every caller in the package (the dataset and models/checks.py), which equals DETR2DCNN's
default `num_queries`; only the tests pass another value. Requires: one window's events in
steps from the window's first step (`WindowEvents`). Outputs: a dict of fixed-shape
float32/int64/bool numpy arrays, so the default DataLoader collate stacks them into batched
tensors.

Frame `i` covers steps `[i * rate, (i + 1) * rate)`; an event at step `s` belongs to frame
`s // rate`. Events a little outside the window may be passed: their Gaussian tails still
count, while point targets (offsets, DETR sets) keep only events inside the window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sleepdetect.core.registry import Registry

TARGET_BUILDERS = Registry("target kind")


@dataclass(frozen=True)
class WindowEvents:
    """One window's ground truth, in steps from the window's first step.

    `sleep_intervals` are `[onset, wakeup)` pairs and may reach outside the window (the sleep
    label is clipped; CenterNet's size needs the full length). Onsets and wakeups are listed
    on their own because a night may have one without the other.
    """

    n_steps: int
    onsets: Sequence[int] = ()
    wakeups: Sequence[int] = ()
    sleep_intervals: Sequence[tuple[int, int]] = ()

    @classmethod
    def from_intervals(cls, n_steps: int, intervals: Sequence[tuple[int, int]]) -> WindowEvents:
        """Events of complete nights: each interval's start is an onset, its end a wakeup."""
        return cls(
            n_steps=n_steps,
            onsets=tuple(int(s) for s, _ in intervals),
            wakeups=tuple(int(e) for _, e in intervals),
            sleep_intervals=tuple((int(s), int(e)) for s, e in intervals),
        )


def n_frames(n_steps: int, downsample_rate: int) -> int:
    """Frames of a window on a grid of `downsample_rate` steps; a partial last frame counts."""
    if n_steps < 1 or downsample_rate < 1:
        raise ValueError(
            f"need n_steps >= 1 and downsample_rate >= 1, got {n_steps}, {downsample_rate}"
        )
    return math.ceil(n_steps / downsample_rate)


def gaussian_peaks(
    steps: Sequence[int], frames: int, downsample_rate: int, sigma: float
) -> np.ndarray:
    """(frames,) max over events of exp(-d^2 / 2 sigma^2), d = distance in steps from the start
    of the event's frame to each frame's start: exactly 1 on the event's frame."""
    if sigma <= 0:
        raise ValueError(f"sigma (peak width in steps) must be positive, got {sigma}")
    out = np.zeros(frames, dtype=np.float32)
    if len(steps) == 0:
        return out
    centre = np.floor_divide(np.asarray(steps, dtype=np.int64), downsample_rate)  # (events,)
    distance = (np.arange(frames)[None, :] - centre[:, None]) * downsample_rate  # (events, frames)
    return np.exp(-0.5 * (distance / sigma) ** 2).max(axis=0).astype(np.float32)


def sleep_fraction(
    intervals: Sequence[tuple[int, int]], n_steps: int, downsample_rate: int
) -> np.ndarray:
    """(frames,) share of each frame's steps (inside the window) that lie in a sleep interval."""
    asleep = np.zeros(n_steps, dtype=np.float32)
    for start, end in intervals:
        asleep[max(start, 0) : max(min(end, n_steps), 0)] = 1.0
    frames = n_frames(n_steps, downsample_rate)
    sums = np.add.reduceat(asleep, np.arange(0, n_steps, downsample_rate))  # (frames,)
    counts = np.minimum(downsample_rate, n_steps - np.arange(frames) * downsample_rate)  # (frames,)
    return (sums / counts).astype(np.float32)


@TARGET_BUILDERS.register("segmentation")
def segmentation_targets(
    events: WindowEvents, downsample_rate: int, sigma: float, max_events: int
) -> dict[str, np.ndarray]:
    """`labels` (frames, 3): [sleep fraction, onset peak, wakeup peak], each in [0, 1].
    Soft Gaussian peaks (width `sigma` steps) reward near misses, as the metric's tolerances
    do. `max_events` is unused."""
    frames = n_frames(events.n_steps, downsample_rate)
    labels = np.stack(
        [
            sleep_fraction(events.sleep_intervals, events.n_steps, downsample_rate),
            gaussian_peaks(events.onsets, frames, downsample_rate, sigma),
            gaussian_peaks(events.wakeups, frames, downsample_rate, sigma),
        ],
        axis=1,
    )
    return {"labels": labels}


@TARGET_BUILDERS.register("centernet")
def centernet_targets(
    events: WindowEvents, downsample_rate: int, sigma: float, max_events: int
) -> dict[str, np.ndarray]:
    """All (frames, 2), columns [onset, wakeup]:
    `heatmap` Gaussian peaks equal to 1 exactly on event frames; `offset` where in its frame
    the event is, as a fraction of the frame ((step - frame start) / rate, in [0, 1)), with
    `mask` marking event frames; `size` log1p of the sleep interval's length in steps at its
    onset's and wakeup's frames, with `size_mask`. `max_events` is unused."""
    n_steps = events.n_steps
    frames = n_frames(n_steps, downsample_rate)
    heatmap = np.stack(
        [
            gaussian_peaks(events.onsets, frames, downsample_rate, sigma),
            gaussian_peaks(events.wakeups, frames, downsample_rate, sigma),
        ],
        axis=1,
    )
    offset = np.zeros((frames, 2), dtype=np.float32)
    mask = np.zeros((frames, 2), dtype=np.float32)
    for column, steps in enumerate((events.onsets, events.wakeups)):
        for step in steps:
            if 0 <= step < n_steps:
                frame = step // downsample_rate
                offset[frame, column] = (step - frame * downsample_rate) / downsample_rate
                mask[frame, column] = 1.0
    size = np.zeros((frames, 2), dtype=np.float32)
    size_mask = np.zeros((frames, 2), dtype=np.float32)
    for start, end in events.sleep_intervals:
        for column, step in enumerate((start, end)):
            if 0 <= step < n_steps:
                size[step // downsample_rate, column] = math.log1p(end - start)
                size_mask[step // downsample_rate, column] = 1.0
    return {
        "heatmap": heatmap,
        "offset": offset,
        "mask": mask,
        "size": size,
        "size_mask": size_mask,
    }


@TARGET_BUILDERS.register("detr")
def detr_targets(
    events: WindowEvents, downsample_rate: int, sigma: float, max_events: int
) -> dict[str, np.ndarray]:
    """The window's events as a padded set, sorted by step: `event_class` (max_events,) int64
    (0 onset, 1 wakeup), `event_position` (max_events,) float32 = (step + 0.5) / n_steps in
    (0, 1), `event_mask` (max_events,) bool marking real entries. Only events inside the
    window count. `downsample_rate` and `sigma` are unused (positions are step-exact)."""
    n_steps = events.n_steps
    found = sorted(
        [(s, 0) for s in events.onsets if 0 <= s < n_steps]
        + [(s, 1) for s in events.wakeups if 0 <= s < n_steps]
    )
    if len(found) > max_events:
        raise ValueError(
            f"a window of {n_steps} steps holds {len(found)} events, more than max_events="
            f"{max_events}; raise max_events (and the model's num_queries) or shorten windows"
        )
    event_class = np.zeros(max_events, dtype=np.int64)
    event_position = np.zeros(max_events, dtype=np.float32)
    event_mask = np.zeros(max_events, dtype=bool)
    for i, (step, kind) in enumerate(found):
        event_class[i] = kind
        event_position[i] = (step + 0.5) / n_steps
        event_mask[i] = True
    return {"event_class": event_class, "event_position": event_position, "event_mask": event_mask}


def build_targets(
    kind: str,
    events: WindowEvents,
    downsample_rate: int,
    sigma: float = 10.0,
    max_events: int = 16,
) -> dict[str, np.ndarray]:
    """Targets of `kind` (a model's `target_kind`) for one window, on the frame grid of
    `downsample_rate` steps (the model's frame size). `sigma`: Gaussian peak width in
    steps; `max_events`: DETR set size."""
    return TARGET_BUILDERS.get(kind)(events, downsample_rate, sigma, max_events)
