"""Per-step scores of one series -> scored event candidates (series_id, step, event, score).

The reference behaviour is peak finding: every local maximum of each event's score trace that is
at least `score_th` high and at least `distance` steps from a higher one becomes a candidate,
scored by its height. The options below moved the winning solutions' scores; each is off by
default and switched on by its argument (or its field of `config.PostprocessConfig`):

(a) minute grid: labels sit on whole minutes; placing candidates a few steps off that grid
    covers one more labelled minute at most tolerances (`minute_phase`, `minute_shift`);
(b) several candidates per peak, with decaying scores (`peak_offsets`, `offset_decay`);
(c) per-day score normalisation, so scores rank well across nights and series (`day_norm`);
(d) suppression inside repeated, not-worn days (`suppress_mask`, `suppress_factor`).

Order of work: peaks -> (b) -> (a) -> one candidate per (event, step) -> (c) -> (d).
Nothing here imports lightning, papermill or kaggle: the Kaggle kernel runs it as is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.signal import find_peaks

STEP_SECONDS = 5
STEPS_PER_MINUTE = 60 // STEP_SECONDS  # 12
STEPS_PER_DAY = 24 * 60 * STEPS_PER_MINUTE  # 17280
EVENTS: tuple[str, ...] = ("onset", "wakeup")
DAY_NORMS = ("none", "max", "sum")

SCHEMA = {"series_id": pl.String, "step": pl.Int64, "event": pl.String, "score": pl.Float64}


def detect_events(
    scores: np.ndarray,
    series_id: str,
    *,
    score_th: float = 0.005,
    distance: int = 40,
    minute_phase: int | None = None,
    minute_shift: int = 3,
    peak_offsets: Sequence[int] = (),
    offset_decay: float = 0.5,
    day_norm: str = "none",
    day_start: int = 0,
    steps_per_day: int = STEPS_PER_DAY,
    suppress_mask: np.ndarray | None = None,
    suppress_factor: float = 0.0,
    events: Sequence[str] = EVENTS,
) -> pl.DataFrame:
    """Event candidates of one series from its per-step scores.

    scores: (steps, len(events)) array, row i = step i, one column per event type (onset,
        wakeup); NaN counts as 0 (no evidence).
    score_th, distance: peak finding (scipy.signal.find_peaks `height` and `distance`, steps).
    minute_phase: (a) off when None; else the step offset of whole-minute steps (steps s with
        (s - minute_phase) % 12 == 0 have seconds 00; see `minute_phase_of`). Labels only ever
        sit on those steps, and a detection matches a label at distance strictly below the
        tolerance. A candidate on a grid step covers 2T/12 - 1 labelled minutes at a tolerance T
        that is a multiple of 12 (12, 36, 60, 120, ...); one moved off the grid by 1-5 steps
        covers 2T/12, and at 90 and 150 loses none (a half minute, 6, would lose one there).
        So each candidate is snapped to its nearest whole minute, then moved `minute_shift`
        steps off it towards the peak's side (a peak exactly on the grid moves later).
    peak_offsets, offset_decay: (b) for each peak, extra candidates at peak + offset (steps),
        scored peak score x offset_decay ** (|offset| / 12). Where the peak misses its label
        by more than a small tolerance, a neighbour can still hit it; being scored lower than
        its peak, it ranks after the peaks, so it adds recall at little cost in precision
        (the greedy matching gives the label to the peak first when both reach it).
    day_norm, day_start, steps_per_day: (c) "max" divides each candidate's score by the
        highest score of its event type in its day window, "sum" by their sum; windows start
        at `day_start` (e.g. local noon, see `day_start_of`) every `steps_per_day` steps, so a
        window holds one night. AP ranks candidates of all series together, while a model is
        confident on some nights and timid on others: after normalisation every night's best
        candidate ranks near the top ("sum" reads as the candidate's share of that night).
    suppress_mask, suppress_factor: (d) a bool per step, True inside repeated (not worn) days;
        candidates there get score x suppress_factor (0: removed). Repeated days carry no
        labels, so whatever is found there is a false positive, and per-day normalisation
        would otherwise lift it to the top. Applied after (c) for that reason.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(events):
        raise ValueError(
            f"scores must have shape (steps, {len(events)}) for events {list(events)}, "
            f"got {scores.shape}"
        )
    n_steps = scores.shape[0]
    if distance < 1:
        raise ValueError(f"distance must be at least 1 step, got {distance}")
    if day_norm not in DAY_NORMS:
        raise ValueError(f"day_norm must be one of {list(DAY_NORMS)}, got {day_norm!r}")
    if minute_phase is not None and not 0 <= minute_shift < STEPS_PER_MINUTE:
        raise ValueError(f"minute_shift must be 0..11 steps (best: 1-5), got {minute_shift}")
    if suppress_mask is not None and np.shape(suppress_mask) != (n_steps,):
        raise ValueError(
            f"suppress_mask must hold one bool per step ({n_steps}), got {np.shape(suppress_mask)}"
        )
    scores = np.nan_to_num(scores, nan=0.0)

    steps_l, score_l, event_l = [], [], []
    for e in range(len(events)):
        peaks, props = find_peaks(scores[:, e], height=score_th, distance=distance)
        step, score = peaks.astype(np.int64), props["peak_heights"]
        if len(peak_offsets):
            off = np.asarray(peak_offsets, dtype=np.int64)
            decay = offset_decay ** (np.abs(off) / STEPS_PER_MINUTE)
            step = np.concatenate([step, (step[:, None] + off[None, :]).ravel()])
            score = np.concatenate([score, (score[:, None] * decay[None, :]).ravel()])
        if minute_phase is not None:
            step = _off_grid(step, minute_phase, minute_shift)
        keep = (step >= 0) & (step < n_steps)
        step, score = _best_per_step(step[keep], score[keep])
        steps_l.append(step)
        score_l.append(score)
        event_l.append(np.full(step.size, e))
    step, score, event = (np.concatenate(x) for x in (steps_l, score_l, event_l))

    if day_norm != "none":
        score = _normalise_by_day(step, score, event, day_norm, day_start, steps_per_day)
    if suppress_mask is not None:
        inside = np.asarray(suppress_mask, dtype=bool)[step]
        score = np.where(inside, score * suppress_factor, score)
    keep = score > 0
    order = np.lexsort((event[keep], step[keep]))
    names = np.asarray(events, dtype=object)
    return pl.DataFrame(
        {
            "series_id": [series_id] * int(keep.sum()),
            "step": step[keep][order],
            "event": names[event[keep][order]].tolist(),
            "score": score[keep][order],
        },
        schema=SCHEMA,
    )


def _off_grid(step: np.ndarray, phase: int, shift: int) -> np.ndarray:
    """Nearest whole-minute step of each step (half way: the later one), moved `shift` steps
    back towards the original step (a step on the grid moves later)."""
    half = STEPS_PER_MINUTE // 2
    grid = np.floor_divide(step - phase + half, STEPS_PER_MINUTE) * STEPS_PER_MINUTE + phase
    return grid + np.where(step < grid, -shift, shift)


def _best_per_step(step: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One candidate per step (the highest score): a second one at the same step adds nothing
    but a possible false positive."""
    if step.size == 0:
        return step, score
    order = np.lexsort((-score, step))
    step, score = step[order], score[order]
    first = np.append(True, step[1:] != step[:-1])
    return step[first], score[first]


def _normalise_by_day(
    step: np.ndarray,
    score: np.ndarray,
    event: np.ndarray,
    how: str,
    day_start: int,
    steps_per_day: int,
) -> np.ndarray:
    """Each score divided by the max (or sum) of its event type's scores in its day window."""
    if step.size == 0:
        return score
    day = np.floor_divide(step - day_start, steps_per_day)  # -1 before the first boundary
    _, group = np.unique(np.stack([event, day]), axis=1, return_inverse=True)
    group = group.ravel()
    if how == "max":
        denom = np.zeros(group.max() + 1)
        np.maximum.at(denom, group, score)
    else:
        denom = np.bincount(group, weights=score)
    return score / denom[group]


# ---------------------------------------------------------------- series-level helpers

_TIME = re.compile(r"T(\d{2}):(\d{2}):(\d{2})")


def _local_time(timestamp: str) -> tuple[int, int, int]:
    m = _TIME.search(timestamp)
    if m is None:
        raise ValueError(
            f"timestamp {timestamp!r} has no THH:MM:SS part "
            "(expected e.g. 2018-08-14T15:30:00-0400)"
        )
    h, mi, s = (int(x) for x in m.groups())
    return h, mi, s


def minute_phase_of(first_timestamp: str) -> int:
    """The step offset of whole-minute steps in a series whose step 0 has `first_timestamp`:
    step s has seconds 00 when (s - phase) % 12 == 0. Labels sit only on those steps."""
    seconds = _local_time(first_timestamp)[2]
    if seconds % STEP_SECONDS:
        raise ValueError(f"timestamp {first_timestamp!r}: seconds are not a multiple of 5")
    return (STEPS_PER_MINUTE - seconds // STEP_SECONDS) % STEPS_PER_MINUTE


def day_start_of(first_timestamp: str, hour: int = 12, steps_per_day: int = STEPS_PER_DAY) -> int:
    """The first step at local `hour`:00:00 (0..steps_per_day-1) in a series whose step 0 has
    `first_timestamp`, so day windows from it hold one night each when `hour` is midday.
    (Daylight-saving switches move local time by an hour; the windows ignore that.)"""
    h, mi, s = _local_time(first_timestamp)
    since_midnight = (h * 3600 + mi * 60 + s) / STEP_SECONDS
    return int(math.ceil(hour * 3600 / STEP_SECONDS - since_midnight)) % steps_per_day


def detect_kwargs(cfg: Any, first_timestamp: str) -> dict[str, Any]:
    """`detect_events` arguments from a `config.PostprocessConfig` for one series (all but
    `suppress_mask`, which the caller passes when `cfg.suppress_repeated` is on)."""
    return {
        "score_th": cfg.score_th,
        "distance": cfg.distance,
        "minute_phase": minute_phase_of(first_timestamp) if cfg.minute_snap else None,
        "minute_shift": cfg.minute_shift,
        "peak_offsets": list(cfg.peak_offsets),
        "offset_decay": cfg.offset_decay,
        "day_norm": cfg.day_norm,
        "day_start": day_start_of(first_timestamp, cfg.day_start_hour),
        "suppress_factor": cfg.suppress_factor,
    }


def series_candidates(
    scores: np.ndarray,
    series_id: str,
    first_timestamp: str,
    cfg: Any,
    day_repeat: np.ndarray | None = None,
) -> pl.DataFrame:
    """`detect_events` as a `config.PostprocessConfig` asks, for one series; `day_repeat` is
    that feature's column, needed only when `cfg.suppress_repeated` is on."""
    kwargs = detect_kwargs(cfg, first_timestamp)
    if cfg.suppress_repeated:
        if day_repeat is None:
            raise ValueError(
                "postprocess.suppress_repeated needs the day_repeat feature: add it to "
                "prepare.features"
            )
        kwargs["suppress_mask"] = np.asarray(day_repeat) > 0.5
    return detect_events(scores, series_id, **kwargs)
