"""Raw recordings in: a device file or a CSV of time and x, y, z -> one `Raw` of samples.

Device files are read by `actfast` (ActiGraph `.gt3x`, GENEActiv `.bin`, Axivity `.cwa`), not
by parsers of our own. Their timestamps are the device's clock, which was set to local time
with one UTC offset when the device was started: `Raw.offset_s` keeps that offset (from the
file's metadata, or `--utc-offset`), and `epochs.py` turns device time into local wall-clock
time, across daylight-saving changes when a time zone name is given.

A CSV has a time column and x, y, z in g. Its times are text (`2024-03-30 23:00:00.010`, an
offset such as `+01:00` allowed) or Unix seconds; without a time column the user gives the
start (`--start`) and the sample rate (`--sample-rate`), and those also replace times that
repeat within a second (exports rounded to the second).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from sleepdetect.core.errors import InputError
from sleepdetect.core.registry import Registry

DEVICE_FORMATS = Registry("device format")
NS = 1_000_000_000


@dataclass
class Raw:
    """A recording's samples: device-clock times and acceleration in g, with what the file
    says about itself. `time_ns` is int64 nanoseconds of the device clock read as if UTC."""

    path: Path
    format: str
    time_ns: np.ndarray  # (samples,) int64, increasing
    xyz: np.ndarray  # (samples, 3) float32, g
    sample_rate: float  # Hz, as the file (or the user) states it
    offset_s: int | None  # the device clock's UTC offset, seconds; None: the file does not say
    dynamic_range: float | None  # |g| the device clips at; None: unknown
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return (self.time_ns[-1] - self.time_ns[0]) / NS if len(self.time_ns) else 0.0


def read_raw(
    path: str | os.PathLike[str],
    sample_rate: float | None = None,
    utc_offset: str | None = None,
    start: str | None = None,
) -> Raw:
    """The samples of one recording, by its extension (DEVICE_FORMATS); an InputError naming
    the file and the fix for a file that cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    ext = path.suffix.lower()
    if ext not in DEVICE_FORMATS:
        raise InputError(
            f"{path}: unknown extension {ext or '(none)'!r}; sleepdetect reads "
            f"{', '.join(DEVICE_FORMATS.names())} (or write the recording as a CSV of time, x, "
            "y, z)"
        )
    raw = DEVICE_FORMATS.get(ext)(path, sample_rate=sample_rate, start=start)
    if utc_offset is not None:
        raw.offset_s = parse_offset(utc_offset, f"{path}: --utc-offset")
    if len(raw.time_ns) < 2:
        raise InputError(f"{path}: holds {len(raw.time_ns)} samples; is the recording empty?")
    _check_time(raw)
    return raw


# ---------------------------------------------------------------- device files (actfast)


def _actfast(path: Path) -> dict:
    import actfast  # the `devices` extra: only `convert` and `predict` on device files need it

    try:
        return actfast.read(str(path))
    except Exception as e:  # actfast raises plain errors for truncated and foreign files
        raise InputError(
            f"{path}: not a readable {path.suffix} file ({type(e).__name__}: {e}); is it "
            "complete (copied whole from the device) and of the format its extension says?"
        ) from e


def _from_actfast(
    path: Path,
    data: dict,
    table: str,
    sample_rate: float | None,
    offset_s: int | None,
    dynamic_range: float | None,
    notes: tuple[str, ...] = (),
) -> Raw:
    """A Raw of actfast's `table` (its datetime and acceleration), with what the file says."""
    samples = data["timeseries"][table]
    return Raw(
        path=path,
        format=data["format"],
        time_ns=samples["datetime"],
        xyz=samples["acceleration"],
        sample_rate=float("nan") if sample_rate is None else sample_rate,
        offset_s=offset_s,
        dynamic_range=dynamic_range,
        notes=[*(data.get("warnings") or []), *notes],
    )


@DEVICE_FORMATS.register(".gt3x")
def read_gt3x(path: Path, sample_rate: float | None = None, start: str | None = None) -> Raw:
    data = _actfast(path)
    info = data["metadata"].get("info", {})
    idle = data["metadata"].get("device_feature_enabled", {}).get("sleep_mode") == "true"
    return _from_actfast(
        path,
        data,
        "acceleration",
        sample_rate or _float(info.get("Sample Rate")),
        parse_offset(info.get("TimeZone"), f"{path}: TimeZone"),
        _float(info.get("Acceleration Max")),
        ("idle sleep mode was on: the device stopped sampling while still",) if idle else (),
    )


@DEVICE_FORMATS.register(".bin")
def read_geneactiv(path: Path, sample_rate: float | None = None, start: str | None = None) -> Raw:
    data = _actfast(path)
    config = data["metadata"].get("Configuration Info", {})
    caps = data["metadata"].get("Device Capabilities", {})
    zone = config.get("Time Zone", "").replace("GMT", "").strip()
    rng = re.findall(r"[\d.]+", caps.get("Accelerometer Range", ""))
    rate = re.findall(r"[\d.]+", config.get("Measurement Frequency", ""))
    return _from_actfast(
        path,
        data,
        "high_frequency",
        sample_rate or (float(rate[0]) if rate else None),
        parse_offset(zone or None, f"{path}: Time Zone"),
        float(rng[-1]) if rng else None,
    )


@DEVICE_FORMATS.register(".cwa")
def read_cwa(path: Path, sample_rate: float | None = None, start: str | None = None) -> Raw:
    data = _actfast(path)
    config = data["metadata"].get("configuration", {})
    return _from_actfast(
        path,
        data,
        "high_frequency",
        sample_rate or _float(config.get("sample_rate_hz")),
        None,  # an Axivity stores no time zone (its metadata says -1)
        _float(config.get("accelerometer_range_g")),
    )


# ---------------------------------------------------------------- CSV


_TIME_NAMES = ("time", "timestamp", "datetime", "date_time")
_AXES = (
    ("x", "y", "z"),
    ("acc_x", "acc_y", "acc_z"),
    ("accelerometer x", "accelerometer y", "accelerometer z"),
)


@DEVICE_FORMATS.register(".csv")
def read_csv(path: Path, sample_rate: float | None = None, start: str | None = None) -> Raw:
    """A CSV with a header: a time column (any of _TIME_NAMES) and x, y, z in g."""
    try:
        df = pl.read_csv(path, infer_schema_length=0)  # all text: parsed and checked below
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV ({e})") from e
    # each column is taken out of the frame, so it is freed once copied
    return _from_table(df.columns, df.height, df.drop_in_place, path, "CSV", sample_rate, start)


@DEVICE_FORMATS.register(".parquet")
def read_parquet(path: Path, sample_rate: float | None = None, start: str | None = None) -> Raw:
    """A parquet table of raw samples, laid out as the CSV (competition-schema series, of
    anglez and enmo, need no conversion: `predict` reads them as they are). Read a column at a
    time: a week at 100 Hz is 60M rows."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable parquet file ({e})") from e

    def column(name: str) -> pl.Series:
        return pl.read_parquet(path, columns=[name]).to_series()

    names = meta.schema.to_arrow_schema().names
    return _from_table(names, meta.num_rows, column, path, "parquet", sample_rate, start)


def _from_table(
    names: list[str],
    n: int,
    column: Callable[[str], pl.Series],
    path: Path,
    fmt: str,
    sample_rate: float | None,
    start: str | None,
) -> Raw:
    """Samples from a table of `n` rows with columns `names`, each taken with `column`."""
    cols = {c.strip().lower(): c for c in names}
    axes = next((a for a in _AXES if all(c in cols for c in a)), None)
    if axes is None:
        raise InputError(
            f"{path}: no x, y, z columns (got {', '.join(names) or 'none'}); name the "
            "axes x, y, z (acceleration in g) in the header"
        )
    xyz = np.empty((n, 3), np.float32)
    for i, name in enumerate(axes):
        raw = column(cols[name])
        if raw.dtype.is_numeric():
            values = raw.cast(pl.Float32)
        else:
            values = raw.cast(pl.String).str.strip_chars().cast(pl.Float32, strict=False)
        if values.null_count():
            row = int(values.is_null().arg_max())
            raise InputError(
                f"{path}: column {cols[name]!r} row {row + 1}: {raw[row]!r} is not a "
                "number; fix or delete that row"
            )
        xyz[:, i] = values.to_numpy()
        del raw, values
    time_col = next((cols[n] for n in _TIME_NAMES if n in cols), None)
    offset, notes = None, []
    if time_col is None:
        if start is None or sample_rate is None:
            raise InputError(
                f"{path}: no time column ({' or '.join(_TIME_NAMES)}); add one, or give the "
                "recording's start and sample rate (--start '2024-03-30 21:00:00' "
                "--sample-rate 50)"
            )
        first, offset = _parse_one(start, f"{path}: --start")
        time_ns = _counted(first, n, sample_rate)
        return Raw(path, fmt, time_ns, xyz, float(sample_rate), offset, None, notes)
    time_ns, offset = _times(column(time_col), path, time_col)
    if np.any(time_ns[1:] == time_ns[:-1]):  # rounded to the second
        if sample_rate is None:
            raise InputError(
                f"{path}: times repeat (rounded to the second?); give the sample rate "
                "(--sample-rate HZ) and the times are counted from the first one"
            )
        notes.append(f"times repeat: counted from the first at {sample_rate:g} Hz")
        time_ns = _counted(time_ns[0], n, sample_rate)
    span = max(int(time_ns[-1] - time_ns[0]), 1) if len(time_ns) else 1
    rate = sample_rate or (len(time_ns) - 1) * NS / span
    return Raw(path, fmt, time_ns, xyz, float(rate), offset, None, notes)


def _counted(first_ns: int, n: int, rate: float) -> np.ndarray:
    """Times of `n` samples at `rate` Hz from `first_ns`: for files whose times are missing or
    rounded."""
    return first_ns + np.round(np.arange(n) * NS / rate).astype(np.int64)


_OFFSET_AT_END = re.compile(r"(Z|[+-]\d\d:?\d\d)$")


def _times(column: pl.Series, path: Path, name: str) -> tuple[np.ndarray, int | None]:
    """Device-clock nanoseconds and the offset the times carry (None: none)."""
    if column.dtype == pl.Datetime:
        zone = column.dtype.time_zone
        ns = column.dt.cast_time_unit("ns").cast(pl.Int64).to_numpy()  # instants if zoned
        if not zone:
            return ns, None
        # instants in a zone: the device clock keeps the first sample's offset
        offset = int(column[0].utcoffset().total_seconds())
        return ns + offset * NS, offset
    text = column.cast(pl.String).str.strip_chars()
    seconds = text.cast(pl.Float64, strict=False)
    if seconds.null_count() == 0:  # Unix seconds
        return np.round(seconds.to_numpy() * NS).astype(np.int64), 0
    found = _OFFSET_AT_END.search(text[0] or "")
    zone = "UTC" if found else None
    try:
        parsed = text.str.to_datetime(time_unit="ns", strict=False, time_zone=zone)
    except pl.exceptions.ComputeError:  # no format fits the first times at all
        parsed = pl.Series([None] * len(text), dtype=pl.Datetime("ns"))
    if parsed.null_count():
        row = int(parsed.is_null().arg_max())
        raise InputError(
            f"{path}: column {name!r} row {row + 1}: {text[row]!r} is not a time; write "
            "times as 2024-03-30 23:00:00.010 (an offset such as +01:00 may follow) or as Unix "
            "seconds"
        )
    if not found:
        return parsed.cast(pl.Int64).to_numpy(), None
    offset = parse_offset(found.group(1), f"{path}: {name}")
    # read as instants; the device clock is local time at the first sample's offset
    return parsed.cast(pl.Int64).to_numpy() + offset * NS, offset


def _parse_one(text: str, where: str) -> tuple[int, int | None]:
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise InputError(f"{where}: {text!r} is not a time like 2024-03-30 21:00:00") from e
    offset = None
    if t.tzinfo is not None:
        offset = int(t.utcoffset().total_seconds())
        t = t.replace(tzinfo=None)
    return int((t.replace(tzinfo=timezone.utc).timestamp()) * NS), offset


# ---------------------------------------------------------------- checks


def parse_offset(text: str | None, where: str) -> int | None:
    """'-05:00:00', '+01:00', 'Z', '-0500' -> seconds east of UTC; None stays None."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if text in ("Z", "UTC"):
        return 0
    m = re.fullmatch(r"([+-]?)(\d{1,2}):?(\d\d)(?::?(\d\d))?", text)
    if not m:
        raise InputError(f"{where}: {text!r} is not a UTC offset such as -05:00")
    sign = -1 if m.group(1) == "-" else 1
    seconds = timedelta(
        hours=int(m.group(2)), minutes=int(m.group(3)), seconds=int(m.group(4) or 0)
    )
    return sign * int(seconds.total_seconds())


def _float(text: str | None) -> float | None:
    try:
        return abs(float(text)) if text is not None else None
    except ValueError:
        return None


def _check_time(raw: Raw) -> None:
    """Times must run forward; a file whose clock goes back is damaged (or two joined)."""
    back = np.flatnonzero(raw.time_ns[1:] < raw.time_ns[:-1])
    if len(back):
        i = int(back[0])
        at = datetime.fromtimestamp(raw.time_ns[i] / NS, tz=timezone.utc).replace(tzinfo=None)
        raise InputError(
            f"{raw.path}: time goes back after sample {i + 1} ({at}); is it two recordings "
            "joined? Convert each part on its own"
        )
    if not np.isfinite(raw.sample_rate) or raw.sample_rate <= 0:
        raise InputError(f"{raw.path}: the file states no sample rate; give --sample-rate HZ")
