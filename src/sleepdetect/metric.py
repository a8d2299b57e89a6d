"""Event detection average precision (the competition metric), exact and vectorised.

The definition is the one in docs/DESIGN.md ("The metric, precisely"), quirks included:

- tolerances (steps) 12, 36, 60, 90, 120, 150, 180, 240, 300, 360 for `onset` and `wakeup`;
- ground truth = solution rows with a step; only its series are evaluated (detections in other
  series are ignored, not false positives), detections of an event type absent from it are
  ignored, detections with a missing value (null or NaN) are dropped;
- per (event, tolerance, series) detections are walked by descending score and each takes the
  nearest not-yet-matched ground truth at a distance strictly below the tolerance (equal
  distances: the earlier ground truth);
- per (event, tolerance) the series are pooled and AP is the step integral of precision over
  recall at each distinct score; score = mean over tolerances, then over event types.

Tie order. Detections of one series with equal scores are walked in ascending step order. The
official code first sorts the submission by (series_id, step), then sorts each group by score
with pandas' default sort (quicksort, not guaranteed stable), so ties come out in that step
order whenever the sort happens to act stably; we make that order the rule, which also makes
the score independent of the submission's row order. Ties in (score, step) are
interchangeable. (Ties matter: the tests show a case where the two orders give AP 1 and 0.25.)

Other deliberate details: duplicated ground-truth rows count as separate events (the official
code keeps matched rows in a set of row tuples, so fully identical rows would merge; real labels
never have them, their `night` differs); steps must be whole numbers, as in the competition
(ValueError otherwise), which keeps every comparison exact; equal infinite scores tie (the
official code's np.diff makes NaN there and splits them).

Speed. The greedy matching is sequential by nature; `_match_tolerance` and `_greedy_rounds`
compute exactly the same matching in a few vectorised rounds (`_greedy_rounds` says why it is
exact), for all series and event types at once: no Python loop over detections or series. On
the labels of all 277 training series with 350k detections it runs about 100x faster than the
plain loops of tests/metric_oracle.py (bench/metric.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sleepdetect.constants import EVENTS, TOLERANCES
from sleepdetect.errors import InputError

Tolerances = Sequence[float] | Mapping[str, Sequence[float]] | None


# ---------------------------------------------------------------- public API


def event_detection_ap(solution: Any, submission: Any, tolerances: Tolerances = None) -> float:
    """The competition score of `submission` against `solution` (see the module docstring).

    `solution`: series_id, event, step (rows with an empty step are dropped); `submission`:
    series_id, step, event, score. Polars or pandas frames. `tolerances`: None (the competition's),
    one list for every event type, or a mapping event -> list.
    """
    return event_detection_ap_table(solution, submission, tolerances)[1]


def event_detection_ap_table(
    solution: Any, submission: Any, tolerances: Tolerances = None
) -> tuple[pl.DataFrame, float]:
    """(table, score): the AP of every (event, tolerance) as a polars frame with columns event,
    tolerance, ap (events sorted by name, tolerances in the given order), and the score they
    average to."""
    return match_detections(solution, submission, tolerances).table()


@dataclass
class MatchedDetections:
    """The expensive half of the metric done once: every detection with its true-positive flag
    at each (event, tolerance). Matching is per series, so the AP of any pool of series
    (repeats allowed, as in a bootstrap) follows from these flags with a few sorts: `table`.
    Series are the solution's, sorted by name (`series`)."""

    events: list[str]
    tolerances: dict[str, list[float]]
    series: list[str]
    det_series: np.ndarray  # (n,) index into `series`
    det_event: np.ndarray  # (n,) index into `events`
    det_score: np.ndarray  # (n,)
    tp: dict[tuple[int, int], np.ndarray]  # (event, tolerance slot) -> (n,) bool
    n_gt: np.ndarray  # (len(series), len(events)) ground-truth events

    def table(self, counts: np.ndarray | None = None) -> tuple[pl.DataFrame, float]:
        """(table, score) over the series pooled `counts` times each (None: once each). Event
        types without ground truth in the pool are left out, as the metric does."""
        counts = np.ones(len(self.series), np.int64) if counts is None else np.asarray(counts)
        n_gt = counts @ self.n_gt
        weight = counts[self.det_series]
        rows: list[tuple[str, float, float]] = []
        per_event: list[float] = []
        for e, name in enumerate(self.events):
            if n_gt[e] == 0:
                continue
            mask = (self.det_event == e) & (weight > 0)
            idx = np.repeat(np.flatnonzero(mask), weight[mask])
            score = self.det_score[idx]
            ordered = np.sort(score)
            aps = [
                _average_precision(score[self.tp[(e, r)][idx]], ordered, int(n_gt[e]))
                for r in range(len(self.tolerances[name]))
            ]
            rows += [(name, t, a) for t, a in zip(self.tolerances[name], aps, strict=True)]
            per_event.append(float(np.mean(aps)))
        table = pl.DataFrame(
            rows,
            schema={"event": pl.String, "tolerance": pl.Float64, "ap": pl.Float64},
            orient="row",
        )
        return table, float(np.mean(per_event)) if per_event else float("nan")


def match_detections(
    solution: Any, submission: Any, tolerances: Tolerances = None
) -> MatchedDetections:
    """Match `submission` against `solution` once (see `MatchedDetections`)."""
    gt, det, events, series, tol_map = _prepare(solution, submission, tolerances)
    matched = _match_all(gt, det, events, tol_map)
    tp = {}
    for key, hit in matched.items():
        flags = np.zeros(det.score.size, bool)
        flags[hit] = True
        tp[key] = flags
    n_gt = np.zeros((len(series), len(events)), np.int64)
    np.add.at(n_gt, (gt.series, gt.event), 1)
    return MatchedDetections(
        events, tol_map, [str(x) for x in series], det.series, det.event, det.score, tp, n_gt
    )


# ---------------------------------------------------------------- preparing the inputs


@dataclass
class _Events:
    """One side of the comparison as flat arrays; event/series are indices into the solution's."""

    series: np.ndarray  # (n,) int64
    event: np.ndarray  # (n,) int64
    step: np.ndarray  # (n,) float64
    score: np.ndarray  # (n,) float64 (ones for the ground truth)


def _to_polars(frame: Any, what: str) -> pl.DataFrame:
    if isinstance(frame, pl.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        return frame.collect()
    if type(frame).__module__.startswith("pandas"):
        return pl.from_pandas(frame)
    raise TypeError(f"{what} must be a polars or pandas DataFrame, got {type(frame).__name__}")


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {', '.join(missing)}; it has {', '.join(frame.columns)}"
        )


def _tolerance_map(tolerances: Tolerances, events: Sequence[str]) -> dict[str, list[float]]:
    if tolerances is None:
        tolerances = TOLERANCES
    if isinstance(tolerances, Mapping):
        missing = [e for e in events if e not in tolerances]
        if missing:
            raise ValueError(f"no tolerances given for event type(s) {missing} of the solution")
        out = {e: [float(t) for t in tolerances[e]] for e in events}
    else:
        out = {e: [float(t) for t in tolerances] for e in events}
    for e, tols in out.items():
        if not tols or any(not t > 0 for t in tols):
            raise ValueError(f"tolerances for {e!r} must be a non-empty list of positive numbers")
    return out


def _prepare(
    solution: Any, submission: Any, tolerances: Tolerances
) -> tuple[_Events, _Events, list[str], list[str], dict[str, list[float]]]:
    """(ground truth, detections, event names, series names, tolerances); the events' and
    series' indices refer to the two sorted name lists."""
    sol = _to_polars(solution, "solution")
    sub = _to_polars(submission, "submission")
    _require(sol, ["series_id", "event", "step"], "solution")
    _require(sub, ["series_id", "step", "event", "score"], "submission")
    original_step_types = {"solution": sol.schema["step"], "submission": sub.schema["step"]}
    try:
        sol = sol.select(
            pl.col("series_id").cast(pl.String),
            pl.col("event").cast(pl.String),
            pl.col("step").cast(pl.Float64, strict=True),
        )
        # Ground truth: rows with a step; an empty step means "no event that night".
        sol = sol.drop_nulls().filter(pl.col("step").is_finite())
        if sol.height == 0:
            raise ValueError("the solution has no event with a step: there is nothing to score")
        events = sorted(sol["event"].unique().to_list())
        series = sorted(sol["series_id"].unique().to_list())

        def codes(frame: pl.LazyFrame, *numbers: str) -> pl.LazyFrame:
            # Indices into `series` / `events`; null for names absent from the ground truth.
            # (A when-chain beats an Enum cast for the few event names.)
            event = pl.col("event").cast(pl.String)
            code = pl.when(event == events[0]).then(0)
            for i, name in enumerate(events[1:], 1):
                code = code.when(event == name).then(i)
            return frame.select(
                pl.col("series_id")
                .cast(pl.String)
                .cast(pl.Enum(series), strict=False)
                .to_physical()
                .cast(pl.Int64),
                code.otherwise(None).cast(pl.Int64).alias("event"),
                *(pl.col(c).cast(pl.Float64, strict=True) for c in numbers),
            )

        sol = codes(sol.lazy(), "step").collect()
        # Detections with any missing value are dropped (the official code's dropna: NaN
        # counts), so are those in series without ground truth or of event types without any.
        sub = (
            codes(sub.lazy(), "step", "score")
            .drop_nulls()
            .filter(pl.col("step").is_not_nan() & pl.col("score").is_not_nan())
            .collect()
        )
    except pl.exceptions.PolarsError as e:
        raise ValueError(f"step and score must be numeric: {e}") from e
    tol_map = _tolerance_map(tolerances, events)
    gt = _Events(*(sol[c].to_numpy() for c in ("series_id", "event", "step")), np.ones(sol.height))
    det = _Events(*(sub[c].to_numpy() for c in ("series_id", "event", "step", "score")))
    for what, steps in (("solution", gt.step), ("submission", det.step)):
        if original_step_types[what].is_integer():
            continue  # whole by type: skip the check, it costs as much as a sort
        steps = steps[np.isfinite(steps)]
        fractional = steps != np.round(steps)
        if fractional.any():
            raise ValueError(
                f"the {what} has step {steps[fractional][0]}, not a whole number: steps count "
                "5-second samples from 0; round them"
            )
    return gt, det, events, series, tol_map


# ---------------------------------------------------------------- matching


_LAST = complex(np.inf, np.inf)  # walks after every detection


def _match_all(
    gt: _Events, det: _Events, events: list[str], tol_map: dict[str, list[float]]
) -> dict[tuple[int, int], np.ndarray]:
    """Indices of the matched detections for every (event index, tolerance slot)."""
    out = {
        (e, r): np.empty(0, np.int64) for e, n in enumerate(events) for r in range(len(tol_map[n]))
    }
    finite = np.isfinite(det.step)  # an infinite step is never within reach
    if finite.all():
        finite, d_series, d_event, d_step = None, det.series, det.event, det.step
    else:
        finite = np.flatnonzero(finite)
        d_series, d_event, d_step = det.series[finite], det.event[finite], det.step[finite]
    if d_step.size == 0:
        return out
    n_series = int(max(gt.series.max(), d_series.max())) + 1
    base = min(gt.step.min(), d_step.min())
    span = max(gt.step.max(), d_step.max()) - base
    t_max = max(max(t) for t in tol_map.values())
    # Every (event, series) group gets its own stretch of one number line, far enough from the
    # next that no tolerance reaches across: all groups are matched at once, in sorted arrays.
    stride = float(np.ceil(span + 2 * t_max + 2))
    if len(events) * n_series * stride >= 2.0**52:  # keys must stay exact integers in float64
        raise ValueError(f"steps span {span:g}, too far apart to compare exactly")
    g_order = np.argsort((gt.event * n_series + gt.series) * stride + (gt.step - base))
    g_event = gt.event[g_order]
    g = (g_event * n_series + gt.series[g_order]) * stride + (gt.step[g_order] - base)
    dkey = (d_event * n_series + d_series) * stride + (d_step - base)
    order = np.argsort(dkey)
    d_idx = order if finite is None else finite[order]  # detections in key order
    k = dkey[order]

    # Nearest and second-nearest ground truth of every detection while all are unmatched: the
    # same for every tolerance, so computed once. Detections out of reach of all are dropped
    # (false positives at every tolerance).
    j = np.searchsorted(g, k, side="right")  # g[j-1] <= k < g[j]
    pad = np.concatenate(([-np.inf, -np.inf], g, [np.inf, np.inf]))  # pad[j + 2] == g[j]
    dl, dr = k - pad[j + 1], pad[j + 2] - k
    take_left = dl <= dr  # equal distances: the earlier ground truth
    near = np.flatnonzero(np.minimum(dl, dr) < t_max)
    d_idx, k, j, dl, dr, take_left = (a[near] for a in (d_idx, k, j, dl, dr, take_left))
    g1 = np.where(take_left, j - 1, j)
    d2 = np.where(take_left, np.minimum(k - pad[j], dr), np.minimum(dl, pad[j + 3] - k))
    cx = np.flatnonzero(d2 < t_max)  # 2+ ground truths within reach at some tolerance
    cx = cx[np.argsort(d2[cx])]
    cx_d2 = d2[cx]
    event = det.event[d_idx]

    # Walking order without a sort: numpy orders complex numbers by real part, then imaginary
    # part, so -score + 1j * position ranks by descending score, then ascending key (within a
    # group: ascending step, the tie rule); unique, and the position is its imaginary part.
    prio = np.empty(k.size, np.complex128)
    prio.real = -det.score[d_idx]
    prio.imag = np.arange(k.size)

    # One pass per tolerance value serves every event type that uses it (with the default
    # tolerances: 10 passes); ground truths of other event types are never within reach.
    by_tol: dict[float, list[tuple[int, int]]] = {}
    for e, name in enumerate(events):
        for r, t in enumerate(tol_map[name]):
            by_tol.setdefault(t, []).append((e, r))
    # The best detection within reach of each ground truth, kept up to date as the tolerance
    # grows: reach windows only widen, so each pass scans just the two strips it adds.
    best = np.full(g.size, _LAST)
    lo = hi = np.searchsorted(k, g, side="left")
    for t in sorted(by_tol):
        slots = by_tol[t]
        lo_t = np.searchsorted(k, g - t, side="right")  # reach: lo_t <= position < hi_t
        hi_t = np.searchsorted(k, g + t, side="left")
        best = np.minimum(best, _range_min(prio, lo_t, lo))
        best = np.minimum(best, _range_min(prio, hi, hi_t))
        lo, hi = lo_t, hi_t
        evs = sorted({e for e, _ in slots})
        gsel = np.flatnonzero(lo < hi)  # ground truths with a detection within reach
        crowded = cx[: np.searchsorted(cx_d2, t, side="left")]  # 2+ ground truths within reach
        if len(evs) < len(events):
            gsel = gsel[np.isin(g_event[gsel], evs)]
            crowded = crowded[np.isin(event[crowded], evs)]
        top = best[gsel].imag.astype(np.int64)
        won = _match_tolerance(g, gsel, lo[gsel], hi[gsel], top, k, prio, g1, np.sort(crowded), t)
        hit = d_idx[won]
        for e, r in slots:
            out[(e, r)] = hit[det.event[hit] == e]
    return out


def _range_min(vals: np.ndarray, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """min(vals[start[i]:stop[i]]) for every i (`_LAST` where empty), in time proportional to
    the total length of the ranges, not to len(vals)."""
    length = np.maximum(stop - start, 0)
    out = np.full(start.size, _LAST)
    some = length > 0
    if not some.any():
        return out
    ends = np.cumsum(length)
    idx = np.repeat(start - ends + length, length) + np.arange(ends[-1])
    out[some] = np.minimum.reduceat(vals[idx], (ends - length)[some])
    return out


def _match_tolerance(
    g: np.ndarray,
    gsel: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    top: np.ndarray,
    k: np.ndarray,
    prio: np.ndarray,
    g1: np.ndarray,
    crowded: np.ndarray,
    tol: float,
) -> np.ndarray:
    """Positions (in `k`) of the detections that the greedy walk matches at tolerance `tol`.

    `g`, `k`: sorted keys of ground truths and detections; `gsel`: the ground truths with a
    detection within reach, `lo`, `hi`: where those detections are in `k`, `top`: the best of
    them; `prio`: walking order (lower first; complex, the imaginary part is the position);
    `g1`: each detection's nearest ground truth; `crowded`: sorted positions of detections with
    2+ ground truths within reach. This is the first round of `_greedy_rounds` (see there),
    done by ground truth: each takes its best detection within reach if that detection's
    nearest is this ground truth. Left unresolved are the crowded detections and those nearest
    to a ground truth that was not taken; all other losers are false positives. The rounds do
    the rest.
    """
    commit = g1[top] == gsel
    won = top[commit]
    free = np.ones(g.size, bool)
    free[gsel[commit]] = False
    # Unresolved: detections within reach of a ground truth not taken whose nearest it is ...
    lo, hi, keep = lo[~commit], hi[~commit], gsel[~commit]
    length = hi - lo
    pos = np.repeat(lo - np.cumsum(length) + length, length) + np.arange(length.sum())
    pos = pos[g1[pos] == np.repeat(keep, length)]
    # ... and the crowded ones, less this round's winners.
    rest = np.union1d(pos, crowded)
    rest = rest[~np.isin(rest, won, assume_unique=True)]
    if rest.size:
        won = np.concatenate([won, _greedy_rounds(g, free, k, prio, tol, rest)])
    return won


def _greedy_rounds(
    g: np.ndarray, free: np.ndarray, k: np.ndarray, prio: np.ndarray, tol: float, act: np.ndarray
) -> np.ndarray:
    """The sequential greedy matching, computed in vectorised rounds; returns the positions (in
    `k`) of the detections in `act` (sorted, unresolved) that get matched; updates `free`.

    Sequentially, each detection in `prio` order takes its nearest free ground truth within
    `tol` (equal distances: the earlier one). Here, each round, every unresolved detection d
    proposes g = its nearest free ground truth within reach (|d - g| < tol); d without one is a
    false positive for good (ground truths only ever get taken). d is committed to g when d has
    the best priority among all unresolved detections within reach of g. That is the
    sequential result: (1) g is still free when d's turn comes, since any earlier detection that
    could take g is within reach of g, hence resolved, and it did not take g; (2) g is still d's
    nearest free one: ground truths taken later here but earlier sequentially are not g, and
    removing them keeps g the nearest; those taken here already but later sequentially (by some
    e after d) are out of d's reach, or d would have outranked e for them. The best unresolved
    detection always commits, so every round makes progress.

    Only detections with 2+ ground truths of their type within reach get here, and real labels
    have none (same-type events of a series are >= 8232 steps apart, the reach is < 360). With
    labels a few steps apart and scores rising along the series, each round commits one
    detection: that adversarial case takes quadratic time, like the plain loops.
    """
    won = []
    while act.size:
        fi = np.flatnonzero(free)
        if fi.size == 0:
            break
        kk = k[act]
        j = np.searchsorted(g[fi], kk, side="right")
        pad = np.concatenate(([-np.inf], g[fi], [np.inf]))  # pad[j + 1] == g[fi][j]
        dl, dr = kk - pad[j], pad[j + 1] - kk
        take_left = dl <= dr  # equal distances: the earlier ground truth
        has = np.where(take_left, dl, dr) < tol
        act, kk = act[has], kk[has]
        if not act.size:
            break
        prop = fi[np.where(take_left, j - 1, j)[has]]
        pr = prio[act]
        # Proposals are non-decreasing along the key-sorted detections: one run per proposed g.
        start = np.append(True, prop[1:] != prop[:-1])
        cand = prop[start]
        # Best priority among unresolved detections within reach of each proposed g: a range
        # minimum over a window of the sorted detections (never empty: the proposer is in it).
        bounds = np.empty(2 * cand.size, np.intp)
        bounds[0::2] = np.searchsorted(kk, g[cand] - tol, side="right")
        bounds[1::2] = np.searchsorted(kk, g[cand] + tol, side="left")
        best = np.minimum.reduceat(np.append(pr, _LAST), bounds)[0::2]
        win = pr == best[np.cumsum(start) - 1]
        if not win.any():  # impossible with exact (integer) keys; never loop forever
            raise AssertionError("greedy matching made no progress")
        won.append(act[win])
        free[prop[win]] = False
        act = act[~win]
    return np.concatenate(won) if won else np.empty(0, np.int64)


# ---------------------------------------------------------------- average precision


def _average_precision(tp_scores: np.ndarray, scores: np.ndarray, n_gt: int) -> float:
    """AP from the scores of the true positives and the sorted scores of all detections.

    At each distinct score s, precision = TP(>= s) / all(>= s) and recall grows by the true
    positives scored exactly s over `n_gt`; AP sums recall step x precision, which is one term
    per true positive: precision at its score / n_gt. Cutting the curve where recall first
    reaches its final value, as the definition says, changes nothing in this sum (later points
    add no recall), so it is left implicit; so is the appended point (recall 0, precision 1).
    """
    if tp_scores.size == 0:
        return 0.0
    tp = np.sort(tp_scores)
    first = np.append(True, tp[1:] != tp[:-1])  # first of each run of equal scores
    tp_at = tp.size - np.maximum.accumulate(np.where(first, np.arange(tp.size), 0))
    all_at = scores.size - np.searchsorted(scores, tp, side="left")
    return float(np.sum(tp_at / all_at) / n_gt)


# ---------------------------------------------------------------- `python -m sleepdetect score`

_SOLUTION_COLUMNS = ("series_id", "event", "step")
_SUBMISSION_COLUMNS = ("series_id", "step", "event", "score")


def read_solution_csv(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Labels CSV (series_id, event, step; e.g. train_events.csv) -> series_id, event, step."""
    frame = _read_csv(path, _SOLUTION_COLUMNS, "labels (solution)")
    frame = frame.with_columns(_parse_numeric(frame, "step", path, whole=True))
    _check_events(frame, path)
    if frame["step"].drop_nulls().len() == 0:
        raise InputError(
            f"{path}: no row has a step, so there is no event to score against; give the labels "
            "file (e.g. train_events.csv), where labelled nights have a step"
        )
    return frame.select(_SOLUTION_COLUMNS)


def read_submission_csv(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Submission CSV (row_id, series_id, step, event, score) -> series_id, step, event, score.

    A header-only file is a valid, empty submission (it scores 0)."""
    frame = _read_csv(path, _SUBMISSION_COLUMNS, "submission")
    frame = frame.with_columns(
        _parse_numeric(frame, "step", path, whole=True),
        _parse_numeric(frame, "score", path),
    )
    _check_events(frame, path)
    return frame.select(_SUBMISSION_COLUMNS)


def score_command(
    solution_path: str | os.PathLike[str], submission_path: str | os.PathLike[str]
) -> int:
    """Print the AP table of a submission CSV against a labels CSV; the last line is the score."""
    solution = read_solution_csv(solution_path)
    submission = read_submission_csv(submission_path)
    try:
        table, score = event_detection_ap_table(solution, submission)
    except InputError:
        raise
    except ValueError as e:  # what the readers could not see, e.g. steps too far apart
        raise InputError(f"{solution_path} against {submission_path}: {e}") from e

    labelled = solution.drop_nulls("step")
    gt_series = labelled["series_id"].unique().to_list()
    gt_events = labelled["event"].unique().to_list()
    usable = submission.drop_nulls().filter(
        pl.col("step").is_not_nan() & pl.col("score").is_not_nan()
    )
    scored = usable.filter(pl.col("series_id").is_in(gt_series) & pl.col("event").is_in(gt_events))
    print(
        f"solution: {labelled.height} events in {len(gt_series)} series "
        f"({', '.join(f'{e} {n}' for e, n in _counts(labelled))})"
    )
    print(
        f"submission: {submission.height} rows, {scored.height} scored; ignored: "
        f"{submission.height - usable.height} with a missing value, "
        f"{usable.height - scored.height} in series or of event types without labels"
    )
    print(format_table(table))
    print(f"{score:.6f}")
    return 0


def format_table(table: pl.DataFrame) -> str:
    """The AP table as text: one row per event type, one column per tolerance, then the mean."""
    events = table["event"].unique(maintain_order=True).to_list()
    tols = table["tolerance"].unique(maintain_order=True).to_list()
    head = ["event".ljust(8)] + [f"{t:g}".rjust(6) for t in tols] + ["mean".rjust(7)]
    lines = [" ".join(head)]
    for e in events:
        aps = table.filter(pl.col("event") == e)["ap"].to_list()
        cells = [e.ljust(8)] + [f"{a:6.4f}" for a in aps] + [f"{np.mean(aps):7.4f}"]
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _counts(frame: pl.DataFrame) -> list[tuple[str, int]]:
    counts = frame.group_by("event").len().sort("event")
    return list(zip(counts["event"].to_list(), counts["len"].to_list(), strict=True))


def _read_csv(path: str | os.PathLike[str], columns: Sequence[str], what: str) -> pl.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found; check the path")
    if path.stat().st_size == 0:
        raise InputError(
            f"{path}: {what} file is empty; it needs a header line with "
            f"{', '.join(columns)} (then one row per event)"
        )
    try:
        # Everything as text first, so a bad value is reported with its line, not a parse error.
        frame = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot be read as CSV ({e}); give a comma-separated file") from e
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(
            f"{path}: {what} file lacks column {missing[0]!r} (it has "
            f"{', '.join(frame.columns) or 'no columns'}); the header must name "
            f"{', '.join(columns)}"
        )
    return frame.with_columns(pl.col(c).str.strip_chars() for c in columns)


def _parse_numeric(frame: pl.DataFrame, col: str, path: Any, whole: bool = False) -> pl.Series:
    """The column as Float64; empty cells become null; anything else non-numeric is an error,
    and so is a fraction where `whole` numbers are needed (steps)."""
    text = frame[col]
    text = text.replace("", None) if text.dtype == pl.String else text
    values = text.cast(pl.Float64, strict=False)
    bad = values.is_null() & text.is_not_null()
    if bad.any():
        i = int(bad.arg_max())  # first bad row
        raise InputError(
            f"{path}: column {col!r} must be numeric, but line {i + 2} holds {text[i]!r}; "
            f"write a number there (or leave it empty for a missing value)"
        )
    if whole:
        bad = (values.is_finite() & (values != values.round(0))).fill_null(False)
        if bad.any():
            i = int(bad.arg_max())
            raise InputError(
                f"{path}: column {col!r} must hold whole numbers (5-second steps from 0), but "
                f"line {i + 2} holds {text[i]!r}; round the steps"
            )
    return values.alias(col)


def _check_events(frame: pl.DataFrame, path: Any) -> None:
    names = frame["event"].drop_nulls().unique().to_list()
    unknown = sorted(set(names) - set(EVENTS))
    if unknown:
        i = int(frame["event"].is_in(unknown).arg_max())
        raise InputError(
            f"{path}: column 'event' holds unknown event name {unknown[0]!r} (line {i + 2}); "
            f"valid names: {', '.join(EVENTS)} (lower case)"
        )


def write_metrics(table: pl.DataFrame, score: float, path: str | os.PathLike[str]) -> None:
    """The AP table with a last row `score,,<score>`, written atomically as CSV."""
    from sleepdetect.files import atomic_path

    schema = {"event": pl.String, "tolerance": pl.Float64, "ap": pl.Float64}
    rows = table.cast(schema) if len(table) else pl.DataFrame(schema=schema)  # type: ignore[arg-type]
    summary = pl.DataFrame({"event": ["score"], "tolerance": [None], "ap": [score]}, schema=schema)
    with atomic_path(path) as tmp:
        pl.concat([rows, summary]).write_csv(tmp)
