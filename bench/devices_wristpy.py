"""wristpy's own pipeline on a raw parquet of time, x, y, z, timed step by step: what
wristpy.core.orchestrator runs after reading a file, with its defaults (gradient calibration,
5-s epochs, ENMO, GGIR non-wear, GGIR-style sleep detection, clean-up against non-wear).

Run by bench/devices.py with a Python that has wristpy (which needs polars < 2), e.g.
/tmp/wpy/bin/python bench/devices_wristpy.py FILE; prints one JSON line of rows.
"""

import json
import resource
import sys
import time

import polars as pl
from wristpy.core import models
from wristpy.core.orchestrator import _compute_activity
from wristpy.io.readers import readers
from wristpy.processing import analytics, calibration, metrics, processing_utils

rows = []


def mark(stage, since):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rows.append({"stage": stage, "s": time.perf_counter() - since, "peak_gb": peak})
    return time.perf_counter()


frame = pl.read_parquet(sys.argv[1])
t_ns = frame["time"].dt.replace_time_zone(None).cast(pl.Int64).to_numpy()  # the local clock
xyz = frame.select("x", "y", "z").to_numpy()
del frame
t0 = t = time.perf_counter()  # reading is not counted
acc = models.Measurement(measurements=xyz, time=readers.unix_epoch_time_to_polars_datetime(t_ns))
t = mark("wristpy: build its Measurement (its reader's last step)", t)
cal = calibration.CalibrationDispatcher("gradient").run(acc, return_input_on_error=True)
t = mark("wristpy: calibrate (gradient)", t)
anglez = metrics.angle_relative_to_horizontal(cal, epoch_length=5)
enmo = _compute_activity(cal, "enmo", 5, dynamic_range=(-8.0, 8.0))
t = mark("wristpy: anglez + enmo", t)
nonwear = processing_utils.get_nonwear_measurements(
    calibrated_acceleration=cal, temperature=None, non_wear_algorithms=["ggir"]
)
nonwear = processing_utils.synchronize_measurements(
    data_measurement=nonwear, reference_measurement=anglez, epoch_length=5
)
t = mark("wristpy: non-wear", t)
found = analytics.GgirSleepDetection(anglez).run_sleep_detection()
sleep, nonwear = analytics.sleep_cleanup(
    sleep_windows=found.sleep_windows, nonwear_measurement=nonwear, adaptive=True
)
t = mark("wristpy: sleep windows + clean-up", t)
mark("wristpy to its sleep windows", t0)
print(json.dumps(rows))
