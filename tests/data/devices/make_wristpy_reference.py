"""Write wristpy's own 5-s anglez and ENMO of each device file here to wristpy/<name>.csv,
the independent reference tests/test_devices.py compares `convert` with.

wristpy needs polars < 2, so it runs in a virtual environment of its own, not the project's:

    python3 -m venv /tmp/wpy && /tmp/wpy/bin/pip install wristpy==0.2.10
    /tmp/wpy/bin/python tests/data/devices/make_wristpy_reference.py

No calibration (the files are minutes long; both tools need hours of data to calibrate).
"""

from pathlib import Path

import polars as pl
from wristpy.core import orchestrator

HERE = Path(__file__).parent

for path in sorted([*HERE.glob("*.gt3x"), *HERE.glob("*.bin")]):
    result = orchestrator.run(input=path, calibrator=None, epoch_length=5)
    enmo = result.physical_activity_metric[0]
    frame = pl.DataFrame(
        {
            "time": result.anglez.time.dt.strftime("%Y-%m-%dT%H:%M:%S"),
            "anglez": result.anglez.measurements,
            "enmo": enmo.measurements,
        }
    )
    frame.write_csv(HERE / "wristpy" / f"{path.stem}.csv")
    print(path.name, len(frame))
