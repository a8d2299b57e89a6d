"""Regenerate docs/synthetic_series.png: one generated series with its labels, to see at a
glance what the built-in synthetic data looks like.

    python bench/plot_synthetic.py [--out docs/synthetic_series.png] [--real /tmp/real.png]

The plotted series is the "showcase" series of seed 0 (series index 0): labelled nights, a nap,
and a night when the device was not worn, filled with an exact copy of the day before (no events).
`--real` also draws the real sample series the same way (to a path outside the repository: the
real data are licensed and never committed).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import polars as pl

from sleepdetect.data.synthetic import TRAIN, series_id_for, write_synthetic
from sleepdetect.plots import plot_series

REPO = Path(__file__).resolve().parents[1]
REAL = Path(os.environ.get("SLEEPDETECT_REAL_DATA", REPO.parent / "shared" / "data" / "cmi"))
SEED, N_SERIES, DAYS = 0, 3, 4.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "docs" / "synthetic_series.png")
    p.add_argument("--real", type=Path, default=None, help="also plot the real sample here")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic(tmp, n_series=N_SERIES, days=DAYS, seed=SEED)
        sid = series_id_for(SEED, TRAIN, 0)
        series = pl.read_parquet(Path(tmp) / "train_series.parquet").filter(
            pl.col("series_id") == sid
        )
        events = pl.read_csv(Path(tmp) / "train_events.csv")
    title = (
        f"synthetic series {sid} (seed {SEED}): night 2 not worn (a copy of the day before, "
        "no events); shaded: labelled sleep"
    )
    print(plot_series(series, events, args.out, title))
    if args.real is not None:
        real = pl.read_parquet(REAL / "train_series.parquet")
        real = real.filter(pl.col("step") < series.height)  # same length, for comparison
        real_events = pl.read_csv(REAL / "train_events.csv")
        print(plot_series(real, real_events, args.real, "real sample series (same length)"))


if __name__ == "__main__":
    main()
