"""Time the synthetic generator at the full competition scale and report its peak memory.

    python bench/synthetic_full_scale.py --out /tmp/full            # 277 series, ~128M rows
    python bench/synthetic_full_scale.py --out /tmp/x --series 40   # smaller, same mean length

Prints a table: rows written, file sizes, wall time, rows per second and the peak resident
memory of this process (the generator writes series by series, so the peak does not grow with
the number of series).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

from sleepdetect.data.synthetic import FULL_SCALE, train_rows, write_synthetic


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the generated files")
    p.add_argument("--series", type=int, default=FULL_SCALE["n_series"])
    p.add_argument("--days", type=float, default=FULL_SCALE["days"])
    p.add_argument("--seed", type=int, default=FULL_SCALE["seed"])
    args = p.parse_args()

    expected = train_rows(args.series, args.days, args.seed)
    t0 = time.perf_counter()
    paths = write_synthetic(args.out, n_series=args.series, days=args.days, seed=args.seed)
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux

    import pyarrow.parquet as pq

    train_n = pq.ParquetFile(paths[0]).metadata.num_rows
    test_n = pq.ParquetFile(paths[2]).metadata.num_rows
    if train_n != expected:
        sys.exit(f"train rows {train_n} != planned {expected}")
    print("| quantity | value |")
    print("| --- | --- |")
    print(f"| arguments | --series {args.series} --days {args.days} --seed {args.seed} |")
    print(f"| train rows | {train_n:,} (real: 127,946,340) |")
    print(f"| test rows | {test_n:,} |")
    for path in paths:
        print(f"| {path.name} | {path.stat().st_size / 2**20:,.1f} MiB |")
    print(f"| wall time | {wall:,.1f} s |")
    print(f"| rows per second | {(train_n + test_n) / wall:,.0f} |")
    print(f"| peak RSS | {peak_mib:,.0f} MiB |")


if __name__ == "__main__":
    main()
