"""Benchmark 01_prepare at full competition scale: wall time and peak RSS per feature set.

    python bench/prepare.py                 # 277 synthetic series, ~128M rows (cached)
    python bench/prepare.py --series 20     # a quicker look

The synthetic files are generated once into bench/.cache/ (about 1 GB). Each prepare runs in a
fresh process so its peak RSS is its own. Prints a table, then one JSON line with the figures.
Reference solution on a file of this size on the same 2-core machine: 87 s, 17.6 GB peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from scale import synthetic_data
from sleepdetect.data.features import FULL_FEATURES, REFERENCE_FEATURES
from sleepdetect.data.io import count_rows
from sleepdetect.data.synthetic import FULL_SCALE

HERE = Path(__file__).resolve().parent

CHILD = """
import json, resource, sys, time
from sleepdetect.config import load_config
from sleepdetect.data.prepare import prepare
cfg = load_config(None, sys.argv[1:])
start = time.perf_counter()
prepare(cfg)
wall = time.perf_counter() - start
peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"wall_s": wall, "peak_rss_gb": peak_gb}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=FULL_SCALE["n_series"])
    parser.add_argument("--days", type=float, default=FULL_SCALE["days"])
    parser.add_argument("--seed", type=int, default=FULL_SCALE["seed"])
    args = parser.parse_args()

    data = synthetic_data(args.series, args.days, args.seed)
    rows = count_rows(data / "train_series.parquet")

    results = {}
    for name, features in (("reference", REFERENCE_FEATURES), ("full", FULL_FEATURES)):
        with tempfile.TemporaryDirectory(dir=HERE / ".cache") as out:
            overrides = [
                f"data.dir={data}",
                f"output.dir={out}",
                f"prepare.features=[{','.join(features)}]",
            ]
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, *overrides],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                sys.exit(f"prepare failed:\n{proc.stderr}")
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
        results[name] = {"features": len(features), **figures}

    print(f"\n01_prepare on {args.series} series, {rows / 1e6:.1f}M rows (2-core machine)")
    print(f"{'feature set':<12} {'features':>8} {'wall s':>8} {'peak RSS GB':>12} {'Mrows/s':>8}")
    for name, r in results.items():
        print(
            f"{name:<12} {r['features']:>8} {r['wall_s']:>8.1f} {r['peak_rss_gb']:>12.2f} "
            f"{rows / r['wall_s'] / 1e6:>8.2f}"
        )
    print(f"{'reference solution':<21} {87.0:>8.1f} {17.6:>12.2f}   (targets: <= 90 s, <= 4 GB)")
    print(json.dumps({"series": args.series, "rows": rows, **results}))


if __name__ == "__main__":
    main()
