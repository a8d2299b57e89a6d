"""Samples -> the competition's 5-second series: anglez, enmo and not_worn per step, with
local timestamps.

The definitions are GGIR's, as the Child Mind Institute's wristpy computes them (the
competition's data came from GGIR):

- enmo: per sample max(|xyz| - 1 g, 0), averaged over the 5 s;
- anglez: per sample atan(z / sqrt(x^2 + y^2)) in degrees, averaged over the 5 s;
- steps start at multiples of 5 s of the device clock, each stamped with its start;
- not worn (GGIR's rule as wristpy applies it, after van Hees et al. 2013): a 60-min window,
  moved in 15-min blocks, is not worn where at least two axes have a standard deviation under
  13 mg; a block is not worn when any window over it is.

Everything is summed per step in one pass (`np.bincount`), so a week at 100 Hz (60M samples)
needs a few arrays of its length and no more. Steps without samples (a device in idle-sleep
mode, a gap) repeat the last angle with no movement, as a still device would read, and are
counted. Timestamps are local wall-clock time with their offset: with a time zone name
(`--timezone Europe/London`) the offset follows daylight saving, otherwise the device's own
offset holds throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import polars as pl

from sleepdetect.core.constants import (
    STEP_SECONDS,
    STEPS_PER_DAY,
    STEPS_PER_HOUR,
    TIMESTAMP_FORMAT,
)
from sleepdetect.core.errors import InputError
from sleepdetect.devices.read import NS, Raw

STEP_NS = STEP_SECONDS * NS
BLOCK_STEPS = 180  # 15 min: the non-wear blocks
WINDOW_BLOCKS = 4  # 60 min: the non-wear window
SD_LIMIT = 0.013  # g
CLIP_MARGIN = 0.05  # g below the device's range counts as clipped
_CHUNK = 4_000_000  # samples at a time: bounds the float64 temporaries


@dataclass
class Epochs:
    """One recording as 5-s steps, and what was found on the way (for the convert record)."""

    frame: pl.DataFrame  # series_id, step, timestamp, anglez, enmo, not_worn
    stats: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def to_epochs(raw: Raw, series_id: str, zone: str | None = None) -> Epochs:
    """The 5-s series of `raw` (see the module docstring). `zone`: an IANA time zone name for
    local time across daylight-saving changes; without it the device's offset is used."""
    tz = _zone(zone, raw)
    if raw.offset_s is None and tz is None:
        raise InputError(
            f"{raw.path}: the file does not say its time zone; give it: --timezone "
            "Europe/London (daylight saving followed) or --utc-offset +01:00"
        )
    first = raw.time_ns[0] // STEP_NS * STEP_NS
    step = raw.time_ns - first  # one array of the samples' length, then in place
    step //= STEP_NS
    n = int(step[-1]) + 1
    count = np.bincount(step, minlength=n)
    sums = _sums(raw.xyz, step, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        enmo = sums["enmo"] / count
        anglez = sums["anglez"] / count
    empty = count == 0
    anglez = _carry_forward(anglez, empty)
    enmo[empty] = 0.0
    not_worn = _not_worn(sums, count, n)
    notes = list(raw.notes)
    stats = {
        "samples": int(len(step)),
        "sample_rate": round(float(raw.sample_rate), 3),
        "measured_rate": round(float(len(step) / max(raw.seconds, 1e-9)), 3),
        "steps": n,
        "days": round(n / STEPS_PER_DAY, 2),
        "empty_steps": int(empty.sum()),
        "not_worn_steps": int(not_worn.sum()),
        "clipped_samples": _clipped(raw),
    }
    if stats["empty_steps"]:
        notes.append(
            f"{stats['empty_steps']} steps without samples (gaps, idle sleep): read as a still "
            "device (last angle kept, enmo 0)"
        )
    rate_gap = abs(stats["measured_rate"] - raw.sample_rate) / raw.sample_rate
    if rate_gap > 0.02 and not stats["empty_steps"]:
        notes.append(
            f"the samples come at {stats['measured_rate']} Hz, not the {raw.sample_rate} Hz "
            "stated; steps are built from the times, so both are fine"
        )
    if stats["clipped_samples"]:
        share = stats["clipped_samples"] / stats["samples"]
        notes.append(
            f"{stats['clipped_samples']} samples ({share:.2%}) at the device's range "
            f"(+-{raw.dynamic_range:g} g): enmo is low there"
        )
    if n < STEPS_PER_DAY:
        notes.append(f"shorter than a day ({n / STEPS_PER_HOUR:.1f} h): nights will be partial")
    frame = pl.DataFrame(
        {
            "series_id": series_id,
            "step": np.arange(n, dtype=np.uint32),
            "timestamp": _timestamps(first, n, raw.offset_s, tz),
            "anglez": anglez.astype(np.float32),
            "enmo": enmo.astype(np.float32),
            "not_worn": not_worn,
        }
    )
    return Epochs(frame, stats, notes)


def _zone(zone: str | None, raw: Raw) -> ZoneInfo | None:
    if zone is None:
        return None
    try:
        return ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise InputError(
            f"{raw.path}: --timezone {zone!r} is not a time zone name; use one such as "
            "Europe/London or America/New_York"
        ) from e


def _sums(xyz: np.ndarray, step: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Per-step sums of enmo, anglez and, per axis, x and x^2 (for the non-wear SD)."""
    out = {k: np.zeros(n) for k in ("enmo", "anglez", "s0", "s1", "s2", "q0", "q1", "q2")}
    for lo in range(0, len(step), _CHUNK):
        a = xyz[lo : lo + _CHUNK].astype(np.float64)
        s = step[lo : lo + _CHUNK]
        norm = np.sqrt((a * a).sum(axis=1))
        out["enmo"] += np.bincount(s, np.maximum(norm - 1.0, 0.0), n)
        horizontal = np.hypot(a[:, 0], a[:, 1])
        out["anglez"] += np.bincount(s, np.degrees(np.arctan2(a[:, 2], horizontal)), n)
        for i in range(3):
            out[f"s{i}"] += np.bincount(s, a[:, i], n)
            out[f"q{i}"] += np.bincount(s, a[:, i] * a[:, i], n)
    return out


def _carry_forward(values: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Empty steps take the last value before them (the first ones the first value after)."""
    if not empty.any():
        return values
    idx = np.where(~empty, np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    first = int(np.argmax(~empty))
    out[:first] = values[first]
    return out


def _not_worn(sums: dict, count: np.ndarray, n: int) -> np.ndarray:
    """Per step: inside a 15-min block that some still 60-min window covers."""
    blocks = -(-n // BLOCK_STEPS)
    if blocks < WINDOW_BLOCKS:  # under an hour: no window to judge by
        return np.zeros(n, dtype=bool)
    block = np.arange(n) // BLOCK_STEPS
    cnt = np.bincount(block, count, blocks)
    still_axes = np.zeros(max(blocks - WINDOW_BLOCKS + 1, 0), dtype=np.int8)
    for i in range(3):
        s = np.bincount(block, sums[f"s{i}"], blocks)
        q = np.bincount(block, sums[f"q{i}"], blocks)
        ws, wq, wc = (np.convolve(v, np.ones(WINDOW_BLOCKS), "valid") for v in (s, q, cnt))
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (wq - ws * ws / wc) / np.maximum(wc - 1, 1)
        still_axes += np.sqrt(np.maximum(var, 0)) < SD_LIMIT
    flagged = still_axes >= 2
    block_flag = np.zeros(blocks, dtype=bool)
    for k in range(WINDOW_BLOCKS):  # a window flags each of its blocks
        block_flag[k : k + len(flagged)] |= flagged
    return block_flag[block]


def _clipped(raw: Raw) -> int:
    if raw.dynamic_range is None:
        return 0
    limit = raw.dynamic_range - CLIP_MARGIN
    return sum(
        int((np.abs(raw.xyz[lo : lo + _CHUNK]) >= limit).any(axis=1).sum())
        for lo in range(0, len(raw.xyz), _CHUNK)
    )


def _timestamps(first_ns: int, n: int, offset_s: int | None, tz: ZoneInfo | None) -> pl.Series:
    """Local ISO timestamps (TIMESTAMP_FORMAT) of the steps from device time `first_ns`."""
    device = pl.Series(np.arange(n, dtype=np.int64) * STEP_NS + first_ns).cast(pl.Datetime("ns"))
    if tz is None:
        sign = "-" if offset_s < 0 else "+"
        hh, mm = divmod(abs(offset_s) // 60, 60)
        return device.dt.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{hh:02d}{mm:02d}"
    if offset_s is None:  # no offset in the file: its clock was the zone's time at the start
        offset_s = int(device[0].replace(tzinfo=tz).utcoffset().total_seconds())
    utc = pl.Series(device.to_numpy() - np.timedelta64(offset_s, "s"))
    return (
        utc.dt.replace_time_zone("UTC").dt.convert_time_zone(tz.key).dt.strftime(TIMESTAMP_FORMAT)
    )
