"""Our HDCZA against an independent implementation: SKDH's total-sleep-opportunity window
(`skdh.sleep.tso.get_total_sleep_opportunity`) on the same 5-s arm angle of the real series
in ../shared/data/cmi, night by night (noon to noon, local time), with the same parameters
(5-min median, 10th percentile x 15 clipped to 0.13-0.5 degrees, 30-min blocks, 60-min gaps).

SKDH is given the angle as acceleration [cos a, 0, sin a] at fs = 0.2 Hz (one sample a step),
which gives the angle back exactly, and the worn stretches as its wear bouts. Prints the onset
and wakeup differences per night in minutes, then one JSON line.
`tests/test_baselines.py::test_hdcza_agrees_with_skdh_on_the_real_nights` asserts them.

    .venv/bin/python bench/hdcza_skdh.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
from skdh.sleep.tso import get_total_sleep_opportunity  # a dev dependency: the oracle

from sleepdetect.baselines.hdcza import HDCZA, day_bounds
from sleepdetect.core.constants import STEP_SECONDS
from sleepdetect.data.features import not_worn_of
from sleepdetect.data.io import read_series

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmi"


def skdh_window(anglez: np.ndarray, worn: np.ndarray, hdcza: HDCZA) -> tuple[int, int] | None:
    """SKDH's TSO window [onset, wakeup] (steps of this day), or None."""
    a = np.radians(anglez.astype(np.float64))
    accel = np.column_stack([np.cos(a), np.zeros_like(a), np.sin(a)])
    time = np.arange(len(a), dtype=np.float64) * STEP_SECONDS
    edges = np.diff(np.concatenate([[0], worn.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    p = hdcza.params
    _, _, i_start, i_end = get_total_sleep_opportunity(
        0.2, time, accel, None, starts, stops,
        p["min_block_minutes"], p["max_gap_minutes"], p["threshold_min"], p["threshold_max"],
        p["percentile"], p["multiplier"], 0.0, 0.0, lambda _: None,
    )  # fmt: skip
    return None if i_start is None else (int(i_start), int(i_end) - 1)


def compare(series: pl.DataFrame) -> pl.DataFrame:
    """Per night: our HDCZA's and SKDH's onset and wakeup steps and their difference (min)."""
    hdcza = HDCZA()
    anglez = series["anglez"].to_numpy().astype(np.float64)
    seconds = series["seconds_of_day"].to_numpy()
    not_worn = not_worn_of(series).astype(np.float64)
    absdiff = np.abs(np.diff(anglez, prepend=anglez[:1]))
    ours = {w.onset: w for w in hdcza.series_windows(absdiff, series["enmo"].to_numpy(), seconds,
                                                    not_worn) if w.kind == "hdcza"}  # fmt: skip
    rows = []
    for lo, hi in day_bounds(seconds, hdcza.day_start_hour):
        mine = next((w for w in ours.values() if lo <= w.onset < hi), None)
        if mine is None or hi - lo < 12 * 720:  # a day our HDCZA skips, or a part-day
            continue
        theirs = skdh_window(anglez[lo:hi], not_worn[lo:hi] < 0.5, hdcza)
        if theirs is None:
            continue
        rows.append(
            {
                "day_start": series["timestamp"][lo][:10],
                "onset": mine.onset,
                "wakeup": mine.wakeup,
                "onset_skdh": lo + theirs[0],
                "wakeup_skdh": lo + theirs[1],
            }
        )
    return pl.DataFrame(rows).with_columns(
        ((pl.col("onset") - pl.col("onset_skdh")) * STEP_SECONDS / 60).alias("onset_diff_min"),
        ((pl.col("wakeup") - pl.col("wakeup_skdh")) * STEP_SECONDS / 60).alias("wakeup_diff_min"),
    )


def main() -> None:
    if not (DATA / "train_series.parquet").is_file():
        sys.exit(f"{DATA}: the shared real series is not there")
    table = compare(read_series(DATA / "train_series.parquet"))
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200):
        print(table)
    diffs = np.abs(table.select("onset_diff_min", "wakeup_diff_min").to_numpy())
    result = {
        "nights": len(table),
        "median_abs_diff_min": float(np.median(diffs)),
        "max_abs_diff_min": float(diffs.max()),
        "within_5_min": float((diffs <= 5).mean()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
