"""Benchmark: a week-long raw recording through `convert` and the whole `predict`, beside the
same samples through SKDH's and wristpy's own pipelines to their sleep windows.

Writes a synthetic raw recording (default 7 days at 100 Hz: about 60M samples x 3 axes, as a
parquet of time, x, y, z), then runs each measurement in a fresh process and prints seconds
and the peak resident memory after each stage (the process's high-water mark, so it only
grows), then one JSON line. Targets: the whole `predict` in at most 60 s and 4 GB on 2 cores,
and ahead of both peers.

- predict: read, calibrate (SKDH), 5-s steps, write (= `convert`), then features + model +
  candidates, and the report (nights, naps, actogram, HTML page).
- SKDH: calibration, wear detection and its `Sleep` (total sleep opportunity and sleep
  windows per day) on the arrays in memory, so its reading is not counted.
- wristpy: calibration ("gradient"), ENMO and anglez, non-wear and its GGIR-style sleep
  detection on the arrays in memory (wristpy needs polars < 2, so it runs in a Python of its
  own: --wristpy-python /tmp/wpy/bin/python after `pip install wristpy` there; skipped
  without it).

    .venv/bin/python bench/devices.py [--days 7] [--hz 100] [--wristpy-python PATH] [--no-peers]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# each measuring child starts with this: rows of (stage, seconds, peak memory so far)
MARK = r"""
import json, resource, sys, time
t0 = time.perf_counter(); rows = []
def mark(stage, since):
    rows.append({"stage": stage, "s": time.perf_counter() - since,
                 "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20})
    return time.perf_counter()
"""

PREDICT = (
    MARK
    + r"""
from pathlib import Path
from sleepdetect.data.io import iter_series
from sleepdetect.devices.calibrate import calibrate
from sleepdetect.devices.epochs import to_epochs
from sleepdetect.devices.read import read_raw
from sleepdetect.stages.predict import DEFAULT_MODEL, load_model, model_settings, report_series
t = mark("start-up (imports)", t0)
path, out = Path(sys.argv[1]), Path(sys.argv[2])
raw = read_raw(path); t = mark("convert: read", t)
cal = calibrate(raw); t = mark(f"convert: calibrate ({'applied' if cal['applied'] else 'not'})", t)
epochs = to_epochs(raw, "week", "America/New_York"); t = mark("convert: 5-s steps", t)
del raw
epochs.frame.write_parquet(out / "week.parquet"); t = mark("convert: write", t)
folder, bundles = load_model(DEFAULT_MODEL)
settings = model_settings(folder, bundles, None)
series = next(iter_series(out / "week.parquet")); t = mark("predict: read the series", t)
report_series(series, {"path": str(path)}, epochs.notes, bundles, settings, out / "week")
t = mark("predict: model + report (csv, actogram, html)", t)
mark("whole predict", t0)
print(json.dumps(rows))
"""
)

SKDH = (
    MARK
    + r"""
import warnings
import numpy as np
from sleepdetect.devices.read import NS, read_raw
from skdh.preprocessing import AccelThresholdWearDetection, CalibrateAccelerometer
from skdh.preprocessing.window_days import GetDayWindowIndices
from skdh.sleep import Sleep
raw = read_raw(sys.argv[1])
time_s = raw.time_ns / NS; accel = raw.xyz.astype(np.float64); fs = raw.sample_rate
t = time.perf_counter(); t0 = t  # reading is not counted
warnings.simplefilter("ignore")
accel = CalibrateAccelerometer().predict(time=time_s, accel=accel, fs=fs).get("accel", accel)
t = mark("SKDH: calibrate", t)
wear = AccelThresholdWearDetection().predict(time=time_s, accel=accel, fs=fs)["wear"]
t = mark("SKDH: wear", t)
days = GetDayWindowIndices(bases=12, periods=24).predict(time=time_s, fs=fs)
out = Sleep(day_window=(12, 24)).predict(time=time_s, accel=accel, fs=fs, wear=wear, **days)
t = mark("SKDH: sleep (TSO + sleep windows)", t)
mark("SKDH to its sleep windows", t0)
print(json.dumps(rows))
"""
)


def run(argv: list[str]) -> list[dict]:
    """The rows a measuring child prints as its last line (a failure is one row saying so)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode:
        print(done.stderr[-3000:], file=sys.stderr)
        return [{"stage": f"failed (exit {done.returncode})", "s": float("nan"), "peak_gb": 0}]
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--hz", type=float, default=100.0)
    parser.add_argument("--wristpy-python", default=None, help="a Python with wristpy installed")
    parser.add_argument("--no-peers", action="store_true", help="time sleepdetect only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import sys; from sleepdetect.data.synthetic import write_raw;"
             f"write_raw(sys.argv[1], days={args.days}, hz={args.hz}, seed=0)",
             str(tmp / "week.parquet")], check=True,
        )  # fmt: skip
        made = time.perf_counter() - t
        size = (tmp / "week.parquet").stat().st_size / 2**30
        out = tmp / "out"
        out.mkdir()
        data = str(tmp / "week.parquet")
        rows = run([sys.executable, "-c", PREDICT, data, str(out)])
        if not args.no_peers:
            rows += run([sys.executable, "-c", SKDH, data])
        if args.wristpy_python and not args.no_peers:
            rows += run([args.wristpy_python, str(HERE / "devices_wristpy.py"), data])
    print(f"recording: {args.days:g} days at {args.hz:g} Hz, written in {made:.0f} s "
          f"({size:.2f} GB parquet); {os.cpu_count()} cores")  # fmt: skip
    print(f"{'stage':52} | {'seconds':>7} | peak memory (GB)")
    for row in rows:
        print(f"{row['stage']:52} | {row['s']:7.1f} | {row['peak_gb']:.2f}")
    print(json.dumps({"days": args.days, "hz": args.hz, "rows": rows}))


if __name__ == "__main__":
    main()
