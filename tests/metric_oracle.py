"""The metric written as plain loops, straight from docs/DESIGN.md: the oracle that the fast,
vectorised `events/metric.py` must equal. Shared by tests/test_metric.py and bench/metric.py.

Nothing clever on purpose: every rule of the definition is one visible line. It is the official
algorithm (scan the series' ground truths for each detection), minus pandas.
"""

from __future__ import annotations

import math

import polars as pl

TOLERANCES = [12, 36, 60, 90, 120, 150, 180, 240, 300, 360]


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def oracle_ap_table(
    solution: pl.DataFrame, submission: pl.DataFrame, tolerances: list[float] | None = None
) -> tuple[dict[tuple[str, float], float], float]:
    """({(event, tolerance): ap}, score), by the definition, one detection at a time."""
    tolerances = TOLERANCES if tolerances is None else tolerances

    # Ground truth: rows with a step.
    gts: dict[tuple[str, str], list[float]] = {}  # (series, event) -> steps
    for series, event, step in solution.select("series_id", "event", "step").iter_rows():
        if not _missing(step):
            gts.setdefault((series, event), []).append(float(step))
    events = sorted({event for _, event in gts})
    gt_series = sorted({series for series, _ in gts})

    # Detections: drop any with a missing value, in series without ground truth, or of an
    # event type absent from the ground truth.
    dets: dict[tuple[str, str], list[tuple[float, float]]] = {}  # (series, event) -> (score, step)
    rows = submission.select("series_id", "step", "event", "score").iter_rows()
    for series, step, event, score in rows:
        if any(_missing(v) for v in (series, step, event, score)):
            continue
        if series in gt_series and event in events:
            dets.setdefault((series, event), []).append((float(score), float(step)))

    table: dict[tuple[str, float], float] = {}
    for event in events:
        n_gt = sum(len(gts.get((s, event), [])) for s in gt_series)
        for tol in tolerances:
            pooled: list[tuple[float, bool]] = []  # (score, matched) over all series
            for series in gt_series:
                truth = sorted(gts.get((series, event), []))
                taken = [False] * len(truth)
                # Descending score; equal scores in ascending step order.
                walk = sorted(dets.get((series, event), []), key=lambda d: (-d[0], d[1]))
                for score, step in walk:
                    best, best_dist = None, tol
                    for i, g in enumerate(truth):  # ascending: equal distance keeps the earlier
                        dist = abs(step - g)
                        if not taken[i] and dist < best_dist:
                            best, best_dist = i, dist
                    if best is not None:
                        taken[best] = True
                    pooled.append((score, best is not None))
            table[(event, float(tol))] = oracle_average_precision(pooled, n_gt)

    per_event = [sum(table[(e, float(t))] for t in tolerances) / len(tolerances) for e in events]
    return table, sum(per_event) / len(per_event)


def oracle_average_precision(pooled: list[tuple[float, bool]], n_gt: int) -> float:
    """Precision/recall at each distinct score (descending), cut where recall first reaches its
    final value, plus the point (recall 0, precision 1); AP = sum of recall steps x precision."""
    pooled = sorted(pooled, key=lambda d: -d[0])
    points: list[tuple[float, float]] = []  # (recall, precision), descending score
    tp = fp = 0
    for i, (score, matched) in enumerate(pooled):
        if matched:
            tp += 1
        else:
            fp += 1
        if i + 1 == len(pooled) or pooled[i + 1][0] != score:  # last of this distinct score
            points.append((tp / n_gt, tp / (tp + fp)))
    if not points:
        return 0.0
    final = points[-1][0]
    cut = next(i for i, (recall, _) in enumerate(points) if recall == final)
    curve = [(0.0, 1.0)] + points[: cut + 1]
    return sum((curve[i][0] - curve[i - 1][0]) * curve[i][1] for i in range(1, len(curve)))


def oracle_score(
    solution: pl.DataFrame, submission: pl.DataFrame, tolerances: list[float] | None = None
) -> float:
    return oracle_ap_table(solution, submission, tolerances)[1]
