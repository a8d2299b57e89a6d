"""Benchmark: the vectorised metric against the plain-loop oracle on the real labels.

Builds ~350k detections from the labels of all 277 training series (jittered copies of every
true event at several scales, plus random false positives; fixed seed), times
`sleepdetect.metric.event_detection_ap` against `tests/metric_oracle.py`, checks they agree,
and prints a table, then one JSON line with the figures.

    .venv/bin/python bench/metric.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO.parent / "shared" / "data" / "cmi" / "all_train_events.csv"
sys.path.insert(0, str(REPO / "tests"))  # the oracle lives beside the tests that use it
sys.path.insert(0, str(REPO / "src"))

from metric_oracle import oracle_score  # noqa: E402
from sleepdetect.metric import event_detection_ap  # noqa: E402

SEED = 0
# (jitter scale in steps, copies per true event, score scale): near copies score higher.
JITTER = [(6, 6, 1.0), (24, 6, 0.8), (72, 6, 0.6), (240, 6, 0.4), (1440, 6, 0.2)]
N_FALSE = 63_000
REPEATS = 7


def make_detections(labels: pl.DataFrame, seed: int = SEED) -> pl.DataFrame:
    """Jittered copies of each labelled event plus uniform false positives in every series."""
    rng = np.random.default_rng(seed)
    events = labels.drop_nulls("step")
    series = events["series_id"].to_numpy()
    kind = events["event"].to_numpy()
    step = events["step"].to_numpy().astype(np.float64)
    parts = []
    for scale, copies, weight in JITTER:
        n = step.size * copies
        jitter = rng.normal(0.0, scale, n)
        parts.append(
            pl.DataFrame(
                {
                    "series_id": np.repeat(series, copies),
                    "step": np.maximum(np.rint(np.repeat(step, copies) + jitter), 0).astype(
                        np.int64
                    ),
                    "event": np.repeat(kind, copies),
                    "score": weight * rng.random(n),
                }
            )
        )
    # False positives anywhere in any series, labelled nights or not (series without any
    # labelled step are not scored: their detections are ignored, as the metric says).
    lengths = (
        labels.group_by("series_id")
        .agg((pl.col("step").max().fill_null(0) + 17_280).alias("length"))
        .sort("series_id")  # group_by order is not deterministic
    )
    pick = rng.integers(0, lengths.height, N_FALSE)
    parts.append(
        pl.DataFrame(
            {
                "series_id": lengths["series_id"].to_numpy()[pick],
                "step": (rng.random(N_FALSE) * lengths["length"].to_numpy()[pick]).astype(np.int64),
                "event": rng.choice(["onset", "wakeup"], N_FALSE),
                "score": 0.3 * rng.random(N_FALSE),
            }
        )
    )
    detections = pl.concat(parts)
    return detections[rng.permutation(detections.height)]  # no order to lean on


def main() -> int:
    if not LABELS.is_file():
        print(
            f"labels not found at {LABELS}: the benchmark needs all_train_events.csv in "
            "../shared/data/cmi beside the repository",
            file=sys.stderr,
        )
        return 1
    labels = pl.read_csv(LABELS)
    solution = labels.select("series_id", "event", "step")
    submission = make_detections(labels)
    n_events = solution.drop_nulls("step").height

    event_detection_ap(solution, submission)  # warm-up (imports, first-call costs)
    fast_times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fast = event_detection_ap(solution, submission)
        fast_times.append(time.perf_counter() - t0)
    fast_s = min(fast_times)

    t0 = time.perf_counter()
    oracle = oracle_score(solution, submission)
    oracle_s = time.perf_counter() - t0

    print(
        f"{submission.height} detections, {n_events} labelled events, "
        f"{solution['series_id'].n_unique()} series"
    )
    print(f"{'implementation':<22}{'seconds':>10}{'score':>14}")
    print(f"{f'fast (numpy, best/{REPEATS})':<22}{fast_s:>10.3f}{fast:>14.10f}")
    print(f"{'oracle (loops)':<22}{oracle_s:>10.3f}{oracle:>14.10f}")
    abs_diff = abs(fast - oracle)
    figures = {
        "fast_s": round(fast_s, 4),
        "oracle_s": round(oracle_s, 3),
        "speedup": round(oracle_s / fast_s, 1),
        "n_detections": submission.height,
        "n_events": n_events,
        "score": fast,
        "abs_diff": abs_diff,
    }
    print(json.dumps(figures))
    return 0 if abs_diff <= 1e-9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
