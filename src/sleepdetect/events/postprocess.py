"""Per-step scores of one series -> scored event candidates (series_id, step, event, score).

The reference behaviour is peak finding: every local maximum of each event's score trace that is
at least `score_th` high and at least `distance` steps from a higher one becomes a candidate,
scored by its height. The alternative (`method="mass"`) scores a candidate on every minute by
the score mass it could earn under the metric and picks them greedily. The options below moved
the winning solutions' scores; each is off by default and switched on by its argument (or its
field of `config.PostprocessConfig`):

(a) minute grid: labels sit on whole minutes; placing candidates a few steps off that grid
    covers one more labelled minute at most tolerances (`minute_phase`, `minute_shift`);
(b) several candidates per peak, with decaying scores (`peak_offsets`, `offset_decay`);
(c) per-day score normalisation, so scores rank well across nights and series (`day_norm`,
    with its own day windows per event type);
(d) suppression inside repeated, not-worn days (`suppress_mask`, `suppress_factor`);
(e) series edges: candidates near the series' end fade out (`edge_decay_steps`), wakeups at its
    start are down-weighted (`start_wakeup_steps`, `start_wakeup_factor`).

Order of work: (peaks -> (b) -> (a)) or mass -> one candidate per (event, step) -> (c) -> (d)
-> (e), each a named step. `series_candidates` is the one place that reads a
`PostprocessConfig`: a new option is a field, its `detect_events` argument and its step.
Nothing here imports lightning, papermill or kaggle: the Kaggle kernel runs it as is.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.signal import find_peaks

from sleepdetect.config import PostprocessConfig
from sleepdetect.core.constants import (
    EVENTS,
    STEP_SECONDS,
    STEPS_PER_DAY,
    STEPS_PER_HOUR,
    STEPS_PER_MINUTE,
    TOLERANCES,
)

DAY_NORMS = ("none", "max", "sum")
METHODS = ("peaks", "mass")
# PostprocessConfig fields that only peak finding reads (method: mass ignores them)
PEAK_OPTIONS = ("distance", "minute_snap", "peak_offsets", "offset_decay")

SCHEMA = {"series_id": pl.String, "step": pl.Int64, "event": pl.String, "score": pl.Float64}


def detect_events(
    scores: np.ndarray,
    series_id: str,
    *,
    method: str = "peaks",
    score_th: float = 0.005,
    distance: int = 40,
    mass_max_per_day: int = 20,
    tolerances: Sequence[int] = TOLERANCES,
    minute_phase: int | None = None,
    minute_shift: int = 3,
    peak_offsets: Sequence[int] = (),
    offset_decay: float = 0.5,
    day_norm: str = "none",
    day_start: int | Sequence[int] = 0,
    steps_per_day: int = STEPS_PER_DAY,
    suppress_mask: np.ndarray | None = None,
    suppress_factor: float = 0.0,
    edge_decay_steps: int = 0,
    start_wakeup_steps: int = 0,
    start_wakeup_factor: float = 1.0,
    events: Sequence[str] = EVENTS,
) -> pl.DataFrame:
    """Event candidates of one series from its per-step scores.

    scores: (steps, len(events)) array, row i = step i, one column per event type (onset,
        wakeup); NaN counts as 0 (no evidence).
    method: "peaks" (the reference) or "mass".
    score_th, distance: peaks: scipy.signal.find_peaks `height` and `distance` (steps).
    mass_max_per_day, tolerances, score_th: mass. Candidates sit on every minute, `minute_shift`
        steps either side of each whole-minute step (default 3: seconds :15 and :45), never on
        the label grid (see (a)); `minute_phase` is required. A candidate's score is the score
        mass it could earn: the sum over `tolerances` T (the metric's) of the per-step scores at
        distance < T from it (`candidate_mass`). Picks are greedy: the highest-scored candidate
        is taken with that score, then, for each T, the per-step scores within T of it are set
        to 0 (that mass is claimed: the metric gives a label within T to the highest-scored
        detection, so a second candidate there earns nothing at T) and the scores of the
        candidates whose windows overlap are lowered by exactly what they lose. So the second
        pick is the next night, or a neighbour that reaches mass the first did not, at a
        tolerance where it did not; never the first pick's twin. It stops when the best score
        left is below `score_th`; a day window (see (c)) holds at most `mass_max_per_day`
        picks. A peak's height says how sure the model is of one step; its mass says how many
        labels a candidate there is likely to match, which is what AP counts, and a broad or
        double-humped night gets candidates where the mass is rather than on one spike.
        Peak options (`distance`, `peak_offsets`, `offset_decay`) do not apply: `peak_offsets`
        raises, `distance` is not used.
    minute_phase: (a) off when None (peaks); else the step offset of whole-minute steps (steps
        s with (s - minute_phase) % 12 == 0 have seconds 00; see `minute_phase_of`). Labels only
        ever sit on those steps, and a detection matches a label at distance strictly below the
        tolerance. A candidate on a grid step covers 2T/12 - 1 labelled minutes at a tolerance T
        that is a multiple of 12 (12, 36, 60, 120, ...); one moved off the grid by 1-5 steps
        covers 2T/12, and at 90 and 150 loses none (a half minute, 6, would lose one there).
        So each peak is snapped to its nearest whole minute, then moved `minute_shift` steps
        off it towards the peak's side (a peak exactly on the grid moves later).
    peak_offsets, offset_decay: (b) for each peak, extra candidates at peak + offset (steps),
        scored peak score x offset_decay ** (|offset| / 12). Where the peak misses its label
        by more than a small tolerance, a neighbour can still hit it; being scored lower than
        its peak, it ranks after the peaks, so it adds recall at little cost in precision
        (the greedy matching gives the label to the peak first when both reach it).
    day_norm, day_start, steps_per_day: (c) "max" divides each candidate's score by the
        highest score of its event type in its day window, "sum" by their sum; windows start
        at `day_start` (e.g. local noon, see `day_start_of`; one step, or one per event type,
        as the winners cut onset and wakeup days at different hours) every `steps_per_day`
        steps, so a window holds one night. AP ranks candidates of all series together, while
        a model is confident on some nights and timid on others: after normalisation every
        night's best candidate ranks near the top ("sum" reads as the candidate's share of
        that night).
    suppress_mask, suppress_factor: (d) a bool per step, True inside repeated (not worn) days;
        candidates there get score x suppress_factor (0: removed). Repeated days carry no
        labels, so whatever is found there is a false positive, and per-day normalisation
        would otherwise lift it to the top. Applied after (c) for that reason.
    edge_decay_steps: (e) candidates within this many steps of the last step get score x
        (steps - step) / edge_decay_steps, a linear ramp down to 1 / edge_decay_steps at the
        last step (0: off). A series often ends part way through a night or in unworn hours,
        and a night cut off by the end has no labels. After (c) and (d), as (d).
    start_wakeup_steps, start_wakeup_factor: (e) wakeup candidates before this step get score
        x start_wakeup_factor (1: off). A wakeup that early ends a night whose onset came before
        the recording started, and such nights have no labels.
    """
    scores = _checked_scores(scores, events)
    n_steps = scores.shape[0]
    _check_options(
        n_steps,
        method,
        distance,
        day_norm,
        minute_phase,
        minute_shift,
        peak_offsets,
        mass_max_per_day,
        suppress_mask,
        edge_decay_steps,
        start_wakeup_steps,
    )
    starts = _day_starts(day_start, events)
    # 1. candidates of each event type, one per step
    found = []
    for e in range(len(events)):
        if method == "mass":
            step, score = _mass_picks(
                scores[:, e],
                minute_phase,
                minute_shift,
                score_th,
                mass_max_per_day,
                int(starts[e]),
                steps_per_day,
                tolerances,
            )
        else:
            step, score = _peak_candidates(
                scores[:, e],
                score_th,
                distance,
                minute_phase,
                minute_shift,
                peak_offsets,
                offset_decay,
            )
        keep = (step >= 0) & (step < n_steps)
        step, score = _best_per_step(step[keep], score[keep])
        found.append((step, score, np.full(step.size, e)))
    step, score, event = (np.concatenate(x) for x in zip(*found, strict=True))
    # 2. rescored: (c) per day, (d) not-worn days, (e) series edges
    if day_norm != "none":
        score = _normalise_by_day(step, score, starts[event], day_norm, steps_per_day, event)
    if suppress_mask is not None:
        score = _suppress(step, score, suppress_mask, suppress_factor)
    wakeup = list(events).index("wakeup") if "wakeup" in events else -1
    score = _fade_edges(
        step,
        score,
        event,
        n_steps,
        edge_decay_steps,
        wakeup,
        start_wakeup_steps,
        start_wakeup_factor,
    )
    return _candidate_frame(series_id, step, score, event, events)


def _checked_scores(scores: np.ndarray, events: Sequence[str]) -> np.ndarray:
    """(steps, events) float64 scores, NaN as 0 (no evidence)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(events):
        raise ValueError(
            f"scores must have shape (steps, {len(events)}) for events {list(events)}, "
            f"got {scores.shape}"
        )
    return np.nan_to_num(scores, nan=0.0)


def _check_options(
    n_steps: int,
    method: str,
    distance: int,
    day_norm: str,
    minute_phase: int | None,
    minute_shift: int,
    peak_offsets: Sequence[int],
    mass_max_per_day: int,
    suppress_mask: np.ndarray | None,
    edge_decay_steps: int,
    start_wakeup_steps: int,
) -> None:
    """A ValueError naming the option that is out of range or does not fit the method."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if distance < 1:
        raise ValueError(f"distance must be at least 1 step, got {distance}")
    if day_norm not in DAY_NORMS:
        raise ValueError(f"day_norm must be one of {list(DAY_NORMS)}, got {day_norm!r}")
    if minute_phase is not None and not 0 <= minute_shift < STEPS_PER_MINUTE:
        raise ValueError(f"minute_shift must be 0..11 steps (best: 1-5), got {minute_shift}")
    if method == "mass":
        if minute_phase is None:
            raise ValueError("method 'mass' needs minute_phase (see minute_phase_of)")
        if len(peak_offsets):
            raise ValueError("peak_offsets are a peaks option; method 'mass' takes none")
        if mass_max_per_day < 1:
            raise ValueError(f"mass_max_per_day must be at least 1, got {mass_max_per_day}")
    if suppress_mask is not None and np.shape(suppress_mask) != (n_steps,):
        raise ValueError(
            f"suppress_mask must hold one bool per step ({n_steps}), got {np.shape(suppress_mask)}"
        )
    if edge_decay_steps < 0 or start_wakeup_steps < 0:
        raise ValueError(
            f"edge_decay_steps and start_wakeup_steps must be >= 0, got {edge_decay_steps} "
            f"and {start_wakeup_steps}"
        )


def _day_starts(day_start: int | Sequence[int], events: Sequence[str]) -> np.ndarray:
    """One day-window start step per event type."""
    starts = np.atleast_1d(np.asarray(day_start, dtype=np.int64))
    if starts.shape == (1,):
        starts = np.repeat(starts, len(events))
    if starts.shape != (len(events),):
        raise ValueError(
            f"day_start must be one step or one per event type {list(events)}, got {day_start}"
        )
    return starts


def _suppress(step: np.ndarray, score: np.ndarray, mask: np.ndarray, factor: float) -> np.ndarray:
    """(d) Scores inside the masked (not worn) steps x `factor`."""
    inside = np.asarray(mask, dtype=bool)[step]
    return np.where(inside, score * factor, score)


def _fade_edges(
    step: np.ndarray,
    score: np.ndarray,
    event: np.ndarray,
    n_steps: int,
    decay_steps: int,
    wakeup: int,
    start_wakeup_steps: int,
    start_wakeup_factor: float,
) -> np.ndarray:
    """(e) Scores near the series' end ramped down; wakeups (event index `wakeup`, -1: none)
    before `start_wakeup_steps` x `start_wakeup_factor`."""
    if decay_steps > 0:
        score = score * np.clip((n_steps - step) / decay_steps, 0.0, 1.0)
    if start_wakeup_steps > 0 and wakeup >= 0:
        early = (event == wakeup) & (step < start_wakeup_steps)
        score = np.where(early, score * start_wakeup_factor, score)
    return score


def _candidate_frame(
    series_id: str, step: np.ndarray, score: np.ndarray, event: np.ndarray, events: Sequence[str]
) -> pl.DataFrame:
    """The candidates scored above 0, by step then event type, in the SCHEMA."""
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


def _peak_candidates(
    trace: np.ndarray,
    score_th: float,
    distance: int,
    minute_phase: int | None,
    minute_shift: int,
    peak_offsets: Sequence[int],
    offset_decay: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Peaks of one event's trace, then (b) and (a) (steps may fall outside the series)."""
    peaks, props = find_peaks(trace, height=score_th, distance=distance)
    step, score = peaks.astype(np.int64), props["peak_heights"]
    if len(peak_offsets):
        off = np.asarray(peak_offsets, dtype=np.int64)
        decay = offset_decay ** (np.abs(off) / STEPS_PER_MINUTE)
        step = np.concatenate([step, (step[:, None] + off[None, :]).ravel()])
        score = np.concatenate([score, (score[:, None] * decay[None, :]).ravel()])
    if minute_phase is not None:
        step = _off_grid(step, minute_phase, minute_shift)
    return step, score


def mass_grid(n_steps: int, minute_phase: int, minute_shift: int = 3) -> np.ndarray:
    """The steps `minute_shift` before and after every whole minute of a series (sorted):
    the mass method's candidates, never on the label grid when the shift is 1-11."""
    offsets = np.unique(
        np.mod([minute_phase - minute_shift, minute_phase + minute_shift], STEPS_PER_MINUTE)
    )
    grid = (np.arange(0, n_steps, STEPS_PER_MINUTE)[:, None] + offsets[None, :]).ravel()
    return np.sort(grid[grid < n_steps])


def candidate_mass(
    trace: np.ndarray, steps: np.ndarray, tolerances: Sequence[int] = TOLERANCES
) -> np.ndarray:
    """For each candidate step, the sum over tolerances T of `trace` summed over the steps at
    distance < T from it (inside the series): the score mass it could match. One cumulative sum,
    so O(len(steps) x len(tolerances))."""
    trace = np.asarray(trace, dtype=np.float64)
    n = trace.size
    cum = np.concatenate(([0.0], np.cumsum(trace)))
    tol = np.asarray(tolerances, dtype=np.int64)[None, :]
    at = np.asarray(steps, dtype=np.int64)[:, None]
    hi = np.clip(at + tol, 0, n)
    lo = np.clip(at - tol + 1, 0, n)
    return (cum[hi] - cum[lo]).sum(axis=1)


def _mass_picks(
    trace: np.ndarray,
    minute_phase: int,
    minute_shift: int,
    score_th: float,
    max_per_day: int,
    day_start: int,
    steps_per_day: int,
    tolerances: Sequence[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy mass picks of one event's trace (see `detect_events`), each with its score at
    the time it was picked. One (tolerances, steps) copy of the trace holds the mass left at
    each tolerance; a pick touches only the steps and candidates within 2T of it."""
    trace = np.clip(np.asarray(trace, dtype=np.float64), 0.0, None)
    n = trace.size
    cand = mass_grid(n, minute_phase, minute_shift)
    gain = candidate_mass(trace, cand, tolerances)
    keep = (gain >= score_th) & (gain > 0)  # gains only fall: the others are never picked
    cand, gain = cand[keep], gain[keep]
    if cand.size == 0:
        return cand, gain
    _, day = np.unique(np.floor_divide(cand - day_start, steps_per_day), return_inverse=True)
    day = day.ravel()
    left = np.full(day.max() + 1, max_per_day)
    residual = np.repeat(trace[None, :], len(tolerances), axis=0)
    picks, picked = [], []
    for _ in range(int(left.sum())):
        j = int(np.argmax(gain))
        best = gain[j]
        if not (best >= score_th and best > 0):  # also -inf: every day full
            break
        c = int(cand[j])
        picks.append(c)
        picked.append(best)
        gain[j] = -np.inf
        left[day[j]] -= 1
        if left[day[j]] == 0:
            gain[day == day[j]] = -np.inf
        for k, t in enumerate(tolerances):
            lo, hi = max(c - t + 1, 0), min(c + t, n)
            claimed = np.concatenate(([0.0], np.cumsum(residual[k, lo:hi])))
            residual[k, lo:hi] = 0.0
            # candidates c' whose window [c' - t + 1, c' + t) overlaps [lo, hi): each loses the
            # mass claimed in the overlap
            a, b = np.searchsorted(cand, (lo - t + 1, hi + t - 1))
            near = cand[a:b]
            end = np.minimum(near + t, hi) - lo
            begin = np.maximum(near - t + 1, lo) - lo
            gain[a:b] -= claimed[end] - claimed[begin]
    return np.asarray(picks, dtype=np.int64), np.asarray(picked, dtype=np.float64)


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
    day_start: np.ndarray,
    how: str,
    steps_per_day: int,
    event: np.ndarray,
) -> np.ndarray:
    """Each score divided by the max (or sum) of its event type's scores in its day window
    (`day_start`: each candidate's, from its event type)."""
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


# every PostprocessConfig field series_candidates reads: a field added to the config without
# being passed on here fails loudly instead of being ignored
_FIELDS_READ = frozenset(
    {
        "method",
        "score_th",
        "distance",
        "mass_max_per_day",
        "minute_snap",
        "minute_shift",
        "peak_offsets",
        "offset_decay",
        "day_norm",
        "day_start_hour",
        "day_start_hour_wakeup",
        "suppress_repeated",
        "suppress_factor",
        "edge_decay_hours",
        "start_wakeup_hours",
        "start_wakeup_factor",
    }
)


def series_candidates(
    scores: np.ndarray,
    series_id: str,
    first_timestamp: str,
    cfg: PostprocessConfig,
    day_repeat: np.ndarray | None = None,
) -> pl.DataFrame:
    """`detect_events` as a `PostprocessConfig` asks, for one series; `day_repeat` is that
    feature's column, needed only when `cfg.suppress_repeated` is on. The one reader of the
    config: each field is passed on by name, or turned into steps from the series' first
    timestamp. Under `method: mass` the peak options (`distance`, `minute_snap`,
    `peak_offsets`, `offset_decay`) are ignored: mass candidates are always on the minutes
    `minute_shift` off the label grid."""
    unread = [f.name for f in dataclasses.fields(cfg) if f.name not in _FIELDS_READ]
    if unread:
        raise TypeError(
            f"postprocess field(s) {unread} reach no detect_events argument: pass each on in "
            "postprocess.series_candidates"
        )
    mass = cfg.method == "mass"
    wakeup_hour = (
        cfg.day_start_hour if cfg.day_start_hour_wakeup is None else cfg.day_start_hour_wakeup
    )
    suppress_mask = None
    if cfg.suppress_repeated:
        if day_repeat is None:
            raise ValueError(
                "postprocess.suppress_repeated needs the day_repeat feature: add it to "
                "prepare.features"
            )
        suppress_mask = np.asarray(day_repeat) > 0.5
    return detect_events(
        scores,
        series_id,
        method=cfg.method,
        score_th=cfg.score_th,
        distance=cfg.distance,
        mass_max_per_day=cfg.mass_max_per_day,
        minute_phase=minute_phase_of(first_timestamp) if cfg.minute_snap or mass else None,
        minute_shift=cfg.minute_shift,
        peak_offsets=() if mass else cfg.peak_offsets,
        offset_decay=cfg.offset_decay,
        day_norm=cfg.day_norm,
        day_start=[
            day_start_of(first_timestamp, cfg.day_start_hour),
            day_start_of(first_timestamp, wakeup_hour),
        ],
        suppress_mask=suppress_mask,
        suppress_factor=cfg.suppress_factor,
        edge_decay_steps=round(cfg.edge_decay_hours * STEPS_PER_HOUR),
        start_wakeup_steps=round(cfg.start_wakeup_hours * STEPS_PER_HOUR),
        start_wakeup_factor=cfg.start_wakeup_factor,
    )
