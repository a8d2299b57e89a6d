"""Auto-calibration: SKDH's `CalibrateAccelerometer` (van Hees et al. 2014, as in GGIR).

A still wrist reads 1 g; a device whose axes are off by a few percent reads more or less, and
every still minute then carries false ENMO. The fit uses still 10-s windows spread around the
sphere and needs 72 h of data (SKDH's default); a shorter recording, or one whose fit does not
improve the error, is used as it is, with a note.
"""

from __future__ import annotations

import warnings

import numpy as np

from sleepdetect.devices.read import NS, Raw

MIN_HOURS = 72


def calibrate(raw: Raw) -> dict:
    """Calibrate `raw.xyz` in place when the fit succeeds; returns the record's entry."""
    hours = raw.seconds / 3600
    if hours < MIN_HOURS:
        return {"applied": False, "why": f"{hours:.1f} h recorded; calibration needs {MIN_HOURS} h"}
    from skdh.preprocessing import CalibrateAccelerometer  # the `devices` extra

    time_s = (raw.time_ns - raw.time_ns[0]) / NS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = CalibrateAccelerometer(min_hours=MIN_HOURS).predict(
            time=time_s,
            accel=raw.xyz,
            fs=raw.sample_rate,
            apply=False,  # float32: no copy
        )
    said = "; ".join(str(w.message) for w in caught)
    if "offset" not in fit or said:  # SKDH warns when it keeps the data as it is
        return {"applied": False, "why": said or "no calibration fit"}
    offset, scale = np.asarray(fit["offset"]), np.asarray(fit["scale"])
    if not raw.xyz.flags.writeable:  # a reader's buffer
        raw.xyz = raw.xyz.copy()
    raw.xyz += offset.astype(np.float32)  # in place: a week's samples are GBs
    raw.xyz *= scale.astype(np.float32)
    return {"applied": True, "offset": offset.round(5).tolist(), "scale": scale.round(5).tolist()}
