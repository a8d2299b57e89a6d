"""Benchmark: the vectorised metric against the plain-loop oracle on the real labels.

Builds ~350k detections from the labels of all 277 training series (jittered copies of every
true event at several scales, plus random false positives; fixed seed), times
`sleepdetect.events.metric.event_detection_ap` against `tests/metric_oracle.py`, checks they agree,
and prints a table; then the batched entry (`PreparedSolution`, the labels prepared once) against
the plain call on many candidate sets, as tune scores them; then one JSON line with the figures.

    .venv/bin/python bench/metric.py
    .venv/bin/python bench/metric.py --baseline /tmp/old_metric.py   # + an older metric.py, timed
                                                                     #   in the same process
"""

from __future__ import annotations

import argparse
import importlib.util
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
from sleepdetect.events.metric import PreparedSolution, event_detection_ap  # noqa: E402

SEED = 0
# (jitter scale in steps, copies per true event, score scale): near copies score higher.
JITTER = [(6, 6, 1.0), (24, 6, 0.8), (72, 6, 0.6), (240, 6, 0.4), (1440, 6, 0.2)]
N_FALSE = 63_000
REPEATS = 7
# Batched entry: (candidate sets, detections per set), the sets drawn from the 350k detections.
# 35k is about what tune scores per setting on the 10 shared nights.
BATCHES = [(50, 35_000), (5, 350_000)]


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


def best_time(fn, repeats: int) -> float:
    """Best of `repeats` wall times of fn() (the machine is shared: the best is the steadiest)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def candidate_sets(submission: pl.DataFrame, n_sets: int, size: int) -> list[pl.DataFrame]:
    """`n_sets` different sets of `size` detections: rows drawn without replacement, scores
    perturbed, as post-processing settings would change them."""
    rng = np.random.default_rng(SEED + 1)
    sets = []
    for _ in range(n_sets):
        # all rows when the set is the whole submission (then only the scores differ)
        rows = rng.permutation(submission.height)[: min(size, submission.height)]
        noise = rng.normal(1.0, 0.05, rows.size)
        sets.append(submission[rows].with_columns(pl.col("score") * noise))
    return sets


def load_baseline(path: str):
    """An older sleepdetect/metric.py, imported under another name, to time beside this one."""
    spec = importlib.util.spec_from_file_location("baseline_metric", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_metric"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def batched_rows(solution: pl.DataFrame, submission: pl.DataFrame) -> list[dict]:
    """Per-set cost of the plain call against the prepared solution, on each of BATCHES."""
    rows = []
    for n_sets, size in BATCHES:
        sets = candidate_sets(submission, n_sets, size)

        def plain(sets=sets):
            return [event_detection_ap(solution, s) for s in sets]

        def batched(sets=sets):
            prepared = PreparedSolution(solution)  # counted: once per search, not per set
            return [prepared.score(s) for s in sets]

        if plain() != batched():
            raise AssertionError("the prepared solution scored a set unlike the plain call")
        plain_s = batched_s = float("inf")
        for _ in range(5):  # interleaved rounds, so that both see the same load
            plain_s = min(plain_s, best_time(plain, 1) / n_sets)
            batched_s = min(batched_s, best_time(batched, 1) / n_sets)
        rows.append(
            {"sets": n_sets, "size": sets[0].height, "plain_s": plain_s, "batched_s": batched_s}
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="an older sleepdetect/metric.py to time beside")
    args = parser.parse_args()
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

    fast = event_detection_ap(solution, submission)  # warm-up (imports, first-call costs)
    baseline = load_baseline(args.baseline) if args.baseline else None
    if baseline is not None:
        baseline_score = baseline.event_detection_ap(solution, submission)
    # interleaved rounds, so that both see the same load
    fast_s = baseline_s = float("inf")
    for _ in range(3):
        fast_s = min(fast_s, best_time(lambda: event_detection_ap(solution, submission), REPEATS))
        if baseline is not None:
            baseline_s = min(
                baseline_s,
                best_time(lambda: baseline.event_detection_ap(solution, submission), REPEATS),
            )

    t0 = time.perf_counter()
    oracle = oracle_score(solution, submission)
    oracle_s = time.perf_counter() - t0

    batches = batched_rows(solution, submission)

    print(
        f"{submission.height} detections, {n_events} labelled events, "
        f"{solution['series_id'].n_unique()} series"
    )
    print(f"{'implementation':<26}{'seconds':>10}{'score':>14}")
    print(f"{f'fast (numpy, best/{3 * REPEATS})':<26}{fast_s:>10.4f}{fast:>14.10f}")
    if baseline is not None:
        print(f"{'baseline (--baseline)':<26}{baseline_s:>10.4f}{baseline_score:>14.10f}")
    print(f"{'oracle (loops)':<26}{oracle_s:>10.3f}{oracle:>14.10f}")
    if baseline is not None:
        print(f"fast vs baseline: {baseline_s / fast_s:.2f}x faster (same process)")
    print()
    print("batched entry (PreparedSolution, labels prepared once per search) vs the plain call")
    print(f"{'sets':>6}{'detections':>12}{'plain s/set':>14}{'batched s/set':>15}{'ratio':>8}")
    for row in batches:
        print(
            f"{row['sets']:>6}{row['size']:>12}{row['plain_s']:>14.4f}{row['batched_s']:>15.4f}"
            f"{row['plain_s'] / row['batched_s']:>7.2f}x"
        )
    abs_diff = abs(fast - oracle)
    figures = {
        "fast_s": round(fast_s, 4),
        "oracle_s": round(oracle_s, 3),
        "speedup": round(oracle_s / fast_s, 1),
        "n_detections": submission.height,
        "n_events": n_events,
        "score": fast,
        "abs_diff": abs_diff,
        "batched": [
            {**row, "plain_s": round(row["plain_s"], 5), "batched_s": round(row["batched_s"], 5)}
            for row in batches
        ],
    }
    if baseline is not None:
        figures |= {
            "baseline_s": round(baseline_s, 4),
            "vs_baseline": round(baseline_s / fast_s, 2),
            "baseline_abs_diff": abs(baseline_score - fast),
        }
    print(json.dumps(figures))
    agree = abs_diff <= 1e-9 and figures.get("baseline_abs_diff", 0.0) <= 1e-9
    return 0 if agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
