"""Read and validate the competition files.

Series files are streamed one series at a time, so memory follows the longest series, not the
file. Every problem is either an `InputError` that names the file, the series or column, the
problem and the fix, or a documented repair announced by a `DataRepairWarning`:

| input                                   | outcome                                              |
|-----------------------------------------|------------------------------------------------------|
| missing column, wrong dtype             | error                                                |
| a `not_worn` column (from `convert`)    | kept when Boolean, else error                        |
| empty file, not a parquet/CSV file      | error                                                |
| NaN / infinite / null anglez or enmo    | repair: linear interpolation over steps (warning)    |
| anglez outside -90..90                  | error (degrees expected)                             |
| negative enmo                           | repair: clipped to 0, as ENMO is defined (warning)   |
| steps out of order                      | repair: series sorted by step (warning)              |
| duplicated steps, a gap, not from 0     | error                                                |
| file not grouped by series_id           | error                                                |
| malformed or mixed timestamps           | error                                                |
| UTC offset changing mid-series (DST)    | legal: local time follows the offset                 |
| event with empty step                   | legal: a night without events                        |
| event step written as a float (4992.0)  | repair: read as the integer (fractional: error)      |
| unknown event name, two onsets a night  | error                                                |
| events of a series not in the series    | repair: dropped (warning)                            |
| event step beyond the series' end       | error                                                |
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from sleepdetect.core.constants import EVENTS, STEP_SECONDS
from sleepdetect.core.errors import InputError

# The official schema, dtypes included.
SERIES_SCHEMA: dict[str, pl.DataType] = {
    "series_id": pl.String(),
    "step": pl.UInt32(),
    "timestamp": pl.String(),
    "anglez": pl.Float32(),
    "enmo": pl.Float32(),
}
# Read when present: what `convert` adds from the device (devices/epochs.py).
OPTIONAL_COLUMNS: dict[str, pl.DataType] = {"not_worn": pl.Boolean()}
EVENTS_COLUMNS = ("series_id", "night", "event", "step", "timestamp")


class DataRepairWarning(UserWarning):
    """Input was repaired as documented (see the table in this module's docstring)."""


def _repair(message: str) -> None:
    warnings.warn(message, DataRepairWarning, stacklevel=3)


# ---------------------------------------------------------------- series files


def _open_parquet(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise InputError(f"{path}: file not found; expected a competition series file here")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(
            f"{path}: not a parquet file ({e}); series files must be parquet with columns "
            f"{', '.join(SERIES_SCHEMA)}"
        ) from e
    if pf.metadata.num_rows == 0:
        raise InputError(f"{path}: the file holds no rows; it must hold at least one series")
    return pf


def _check_schema(path: Path, schema: pl.Schema, columns: list[str]) -> None:
    for name in columns:
        if name not in schema:
            raise InputError(
                f"{path}: column {name!r} is missing (found {', '.join(schema.names())}); "
                f"series files need {', '.join(SERIES_SCHEMA)}"
            )
        want, got = SERIES_SCHEMA[name], schema[name]
        ok = (
            got == want
            or (want.is_integer() and got.is_integer())
            or (want.is_float() and got.is_float())
        )
        if not ok:
            raise InputError(
                f"{path}: column {name!r} has dtype {got}, expected {want}; "
                f"cast it (e.g. pl.col({name!r}).cast(pl.{want})) and write the file again"
            )


def count_rows(path: str | os.PathLike[str]) -> int:
    """Rows in a series file, from its parquet footer (no data read)."""
    return _open_parquet(Path(path)).metadata.num_rows


def scan_series(path: str | os.PathLike[str]) -> pl.LazyFrame:
    """A lazy, schema-checked view of a whole series file, for exploring in notebooks.

    Values are checked only by `iter_series`/`read_series`, which stream the file."""
    path = Path(path)
    _open_parquet(path)
    lf = pl.scan_parquet(path)
    _check_schema(path, lf.collect_schema(), list(SERIES_SCHEMA))
    return lf


def iter_series(
    path: str | os.PathLike[str],
    series_ids: list[str] | None = None,
    batch_rows: int = 1 << 20,
) -> Iterator[pl.DataFrame]:
    """Yield each series of a parquet file as a validated DataFrame, one at a time.

    The file must be grouped by series_id (the official files are); memory holds one series
    plus one read batch, whatever the number of series.
    """
    path = Path(path)
    pf = _open_parquet(path)
    schema = pl.from_arrow(pf.schema_arrow.empty_table()).schema
    _check_schema(path, schema, list(SERIES_SCHEMA))
    columns = list(SERIES_SCHEMA) + [c for c in OPTIONAL_COLUMNS if c in schema]
    for name in columns[len(SERIES_SCHEMA) :]:
        if schema[name] != OPTIONAL_COLUMNS[name]:
            raise InputError(
                f"{path}: column {name!r} has dtype {schema[name]}, expected "
                f"{OPTIONAL_COLUMNS[name]} (True where the device was not worn)"
            )
    wanted = set(series_ids) if series_ids is not None else None
    seen: set[str] = set()
    pieces: list[pl.DataFrame] = []
    current: str | None = None

    def finish() -> pl.DataFrame | None:
        if current is None or (wanted is not None and current not in wanted):
            return None
        return validate_series(pl.concat(pieces, rechunk=True), path)

    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        df = pl.from_arrow(batch)
        ids = df["series_id"]
        if ids.null_count():
            raise InputError(f"{path}: column 'series_id' has empty values; every row needs one")
        runs = ids.rle()  # runs of equal series_id within the batch, in file order
        start = 0
        for length, sid in zip(runs.struct.field("len"), runs.struct.field("value"), strict=True):
            part = df.slice(start, length)
            start += length
            if sid == current:
                pieces.append(part)
                continue
            if sid in seen:
                raise InputError(
                    f"{path}: series {sid!r} appears in more than one block; the file must be "
                    "grouped by series_id (sort it by series_id, step and write it again)"
                )
            done = finish()
            if done is not None:
                yield done
            seen.add(sid)
            current, pieces = sid, [part]
    done = finish()
    if done is not None:
        yield done


def read_series(path: str | os.PathLike[str], series_ids: list[str] | None = None) -> pl.DataFrame:
    """Read a whole (small) series file, validated. Large files: use `iter_series`."""
    frames = list(iter_series(path, series_ids))
    if not frames:
        raise InputError(f"{path}: none of the series {series_ids} is in the file")
    return pl.concat(frames)


def validate_series(df: pl.DataFrame, path: Path | str = "<frame>") -> pl.DataFrame:
    """Check and repair one series (see the module docstring).

    Returns the official columns plus `seconds_of_day` (Int32, local time), parsed while the
    timestamps are checked so that features need not parse them again."""
    sid = df["series_id"][0]
    where = f"{path}: series {sid!r}"
    df = df.with_columns(pl.col("step").cast(pl.Int64), pl.col("anglez", "enmo").cast(pl.Float32))
    if df["step"].null_count() or df["timestamp"].null_count():
        col = "step" if df["step"].null_count() else "timestamp"
        raise InputError(f"{where}: column {col!r} has empty values; every row needs one")

    df = _check_steps(df, where)
    df = df.with_columns(
        _repair_non_finite(df["anglez"], where),
        _repair_non_finite(df["enmo"], where),
    )
    bad = df.filter((pl.col("anglez") < -90) | (pl.col("anglez") > 90))
    if len(bad):
        raise InputError(
            f"{where}: anglez {bad['anglez'][0]} at step {bad['step'][0]} is outside -90..90 "
            f"({len(bad)} rows); anglez must be the arm angle in degrees (radians? multiply by "
            "180/pi)"
        )
    n_negative = int((df["enmo"] < 0).sum())
    if n_negative:
        _repair(f"{where}: {n_negative} negative enmo values clipped to 0 (ENMO is >= 0)")
        df = df.with_columns(pl.col("enmo").clip(lower_bound=0.0))
    local_sod = _check_timestamps(df, where)
    return df.with_columns(
        pl.col("step").cast(pl.UInt32), pl.Series("seconds_of_day", local_sod, pl.Int32)
    )


def _check_steps(df: pl.DataFrame, where: str) -> pl.DataFrame:
    step = df["step"].to_numpy()
    diff = np.diff(step)
    if len(diff) and (diff <= 0).any():
        if len(np.unique(step)) != len(step):
            dup = int(step[np.flatnonzero(np.diff(np.sort(step)) == 0)[0]])
            raise InputError(
                f"{where}: step {dup} appears more than once; each step must appear once per "
                "series (drop the duplicated rows)"
            )
        _repair(f"{where}: steps were out of order; the series was sorted by step")
        df = df.sort("step")
        step = df["step"].to_numpy()
        diff = np.diff(step)
    if step[0] != 0:
        raise InputError(
            f"{where}: steps start at {step[0]}, not 0; series must start at step 0 "
            "(renumber steps from 0 and shift the event steps by the same amount)"
        )
    if len(diff) and (diff != 1).any():
        i = int(np.flatnonzero(diff != 1)[0])
        raise InputError(
            f"{where}: steps jump from {step[i]} to {step[i + 1]}; steps must be consecutive "
            "(one row per 5 s): resample the recording to 5-second epochs without gaps"
        )
    return df


def _repair_non_finite(values: pl.Series, where: str) -> pl.Series:
    x = values.to_numpy().astype(np.float32, copy=True)
    bad = ~np.isfinite(x)
    n_bad = int(bad.sum())
    if not n_bad:
        return values
    if n_bad == len(x):
        raise InputError(
            f"{where}: column {values.name!r} has no finite value; the series cannot be used "
            "(drop it from the file)"
        )
    idx = np.arange(len(x))
    x[bad] = np.interp(idx[bad], idx[~bad], x[~bad])
    _repair(f"{where}: {n_bad} NaN/infinite/empty {values.name} values linearly interpolated")
    return pl.Series(values.name, x)


_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23])
_SEPARATORS = {4: "-", 7: "-", 10: "T", 13: ":", 16: ":"}
_PLUS, _MINUS = np.uint8((ord("+") - ord("0")) % 256), np.uint8((ord("-") - ord("0")) % 256)


def parse_timestamps(ts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse `2018-08-14T15:30:00-0400` strings into (UTC epoch seconds, local seconds of day).

    Reads the fixed-width bytes with numpy: about 10x faster than strptime with %z, which
    matters at 128M rows. Raises ValueError(index) at the first malformed string.
    """
    arr = ts.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    if arr.null_count:
        raise ValueError(int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0]))
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset : arr.offset + len(arr) + 1]
    lengths = np.diff(offsets)
    if (lengths != 24).any():
        raise ValueError(int(np.flatnonzero(lengths != 24)[0]))
    raw = np.frombuffer(arr.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(-1, 24)
    c = np.ascontiguousarray(raw.T) - np.uint8(ord("0"))  # (24, n); non-digits wrap above 9
    ok = (c[_DIGITS] <= 9).all(axis=0) & ((c[19] == _PLUS) | (c[19] == _MINUS))
    for i, ch in _SEPARATORS.items():
        ok &= c[i] == np.uint8((ord(ch) - ord("0")) % 256)
    c = c.astype(np.int16)
    year = c[0] * 1000 + c[1] * 100 + c[2] * 10 + c[3]
    month, day = c[5] * 10 + c[6], c[8] * 10 + c[9]
    hour, minute, sec = c[11] * 10 + c[12], c[14] * 10 + c[15], c[17] * 10 + c[18]
    off_min = (c[20] * 10 + c[21]) * 60 + c[22] * 10 + c[23]
    ok &= (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31)
    ok &= (hour < 24) & (minute < 60) & (sec < 60) & (off_min <= 14 * 60)
    if not ok.all():
        raise ValueError(int(np.flatnonzero(~ok)[0]))
    sign = np.where(c[19] == _MINUS, -60, 60)
    local_sod = hour.astype(np.int32) * 3600 + minute * 60 + sec
    utc = _days_from_civil(year, month, day) * 86400 + (local_sod - sign * off_min)
    return utc, local_sod


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's civil-date algorithm)."""
    y = y.astype(np.int32) - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146097 + doe - 719468).astype(np.int64)


def _check_timestamps(df: pl.DataFrame, where: str) -> np.ndarray:
    """Timestamps must parse with a UTC offset and advance 5 s a step in UTC (DST is legal).
    Returns the local seconds of day."""
    ts = df["timestamp"]
    try:
        utc, local_sod = parse_timestamps(ts)
    except ValueError as e:
        i = e.args[0]
        raise InputError(
            f"{where}: timestamp {ts[i]!r} at step {df['step'][i]} is not of the form "
            "2018-08-14T15:30:00-0400 (local time with UTC offset); write every timestamp in "
            "that one format"
        ) from None
    jumps = np.diff(utc) != STEP_SECONDS
    if jumps.any():
        i = int(np.flatnonzero(jumps)[0])
        raise InputError(
            f"{where}: timestamps go from {ts[i]!r} to {ts[i + 1]!r} between steps "
            f"{df['step'][i]} and {df['step'][i + 1]}; in UTC they must advance exactly 5 s per "
            "step (check the UTC offsets and that no rows are missing)"
        )
    return local_sod


# ---------------------------------------------------------------- CSV checks
# Shared by `read_events` and the `score` command's readers (events/scoring.py), so that each
# check and its message is written once. Line numbers count the header as line 1.


def read_csv_text(
    path: str | os.PathLike[str],
    columns: Sequence[str],
    what: str,
    header: Sequence[str] | None = None,
) -> pl.DataFrame:
    """Read a CSV with every column as text (so a bad value can be reported with its line, not
    as a parse error). InputError, naming the file and the fix, if it is missing, empty, not a
    CSV or lacks one of `columns`. `what` names the file in messages ("events"); `header` is the
    full header to ask for (default: `columns`)."""
    path = Path(path)
    header = columns if header is None else header
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found; check the path")
    empty = InputError(
        f"{path}: the {what} file is empty; it needs a header line naming "
        f"{', '.join(header)}, then one row per event"
    )
    if path.stat().st_size == 0:
        raise empty
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.NoDataError as e:
        raise empty from e
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as e:
        raise InputError(
            f"{path}: not a readable CSV file ({e}); give a comma-separated file"
        ) from e
    for name in columns:
        if name not in frame.columns:
            raise InputError(
                f"{path}: column {name!r} is missing (found "
                f"{', '.join(frame.columns) or 'no columns'}); the {what} file needs "
                f"{', '.join(header)}"
            )
    return frame


def parse_numbers(text: pl.Series, path: str | os.PathLike[str]) -> pl.Series:
    """A text column as Float64: surrounding blanks are ignored, an empty cell is null (a
    missing value), anything else that is not a number is an InputError naming the line."""
    if text.dtype == pl.String:
        text = text.str.strip_chars().replace("", None)
    values = text.cast(pl.Float64, strict=False)
    bad = values.is_null() & text.is_not_null()
    if bad.any():
        i = int(bad.arg_max())  # first bad row
        raise InputError(
            f"{path}: column {text.name!r} must be numeric, but line {i + 2} holds "
            f"{text[i]!r}; write a number there (or leave it empty for a missing value)"
        )
    return values


def parse_steps(text: pl.Series, path: str | os.PathLike[str]) -> pl.Series:
    """A text step column as Int64 steps (`parse_numbers`, then whole numbers only: "4992.0" is
    read as 4992; a fraction, NaN or infinity is an InputError naming the line). Empty: null
    (a night without events)."""
    values = parse_numbers(text, path)
    bad = (~values.is_finite() | (values != values.floor())).fill_null(False)
    if bad.any():
        i = int(bad.arg_max())
        fix = "round the steps" if np.isfinite(values[i]) else "write a whole number there"
        raise InputError(
            f"{path}: column {text.name!r} must hold whole numbers (5-second steps from 0), but "
            f"line {i + 2} holds {text[i]!r}, not a whole number; {fix} (or leave it empty for "
            "a missing step)"
        )
    return values.cast(pl.Int64)


def check_event_names(frame: pl.DataFrame, path: str | os.PathLike[str]) -> None:
    """InputError naming the line if column `event` holds a name other than `EVENTS` (empty
    cells are left to the caller)."""
    unknown = ~frame["event"].is_in(EVENTS) & frame["event"].is_not_null()
    if unknown.any():
        i = int(unknown.arg_max())
        raise InputError(
            f"{path}: column 'event' holds unknown event name {frame['event'][i]!r} on line "
            f"{i + 2} (series {frame['series_id'][i]!r}); valid names: {', '.join(EVENTS)} "
            "(lower case)"
        )


# ---------------------------------------------------------------- events


def read_events(
    path: str | os.PathLike[str], series_lengths: Mapping[str, int] | None = None
) -> pl.DataFrame:
    """Read `train_events.csv`: series_id, night, event, step (Int64, null for a night
    without events), timestamp. With `series_lengths`, steps are checked against each series."""
    path = Path(path)
    raw = read_csv_text(path, ("series_id", "night", "event", "step"), "events", EVENTS_COLUMNS)
    if "timestamp" not in raw.columns:
        raw = raw.with_columns(pl.lit(None, pl.String).alias("timestamp"))
    raw = raw.select(EVENTS_COLUMNS)
    step = parse_steps(raw["step"], path)
    night = raw["night"].cast(pl.Int64, strict=False)
    if (night.is_null() & raw["night"].is_not_null()).any() or night.is_null().any():
        i = int(night.is_null().arg_true()[0])
        raise InputError(f"{path}: night {raw['night'][i]!r} on line {i + 2} is not a whole number")
    events = raw.with_columns(step=step, night=night)
    check_event_names(events, path)
    twice = (
        events.filter(pl.col("step").is_not_null())
        .group_by("series_id", "night", "event")
        .len()
        .filter(pl.col("len") > 1)
    )
    if len(twice):
        r = twice.row(0, named=True)
        raise InputError(
            f"{path}: series {r['series_id']!r} night {r['night']} has {r['len']} "
            f"{r['event']} events; a night has at most one onset and one wakeup"
        )
    if series_lengths is not None:
        events = _check_event_steps(events, series_lengths, path)
    return events.sort("series_id", "night", "event")


def _check_event_steps(
    events: pl.DataFrame, series_lengths: Mapping[str, int], path: Path
) -> pl.DataFrame:
    absent = sorted(set(events["series_id"].unique()) - set(series_lengths))
    if absent:
        _repair(
            f"{path}: events of {len(absent)} series not in the series file were dropped "
            f"({', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''})"
        )
        events = events.filter(pl.col("series_id").is_in(list(series_lengths)))
    lengths = pl.DataFrame(
        {"series_id": list(series_lengths), "_n": list(series_lengths.values())},
        schema={"series_id": pl.String, "_n": pl.Int64},
    )
    beyond = events.join(lengths, on="series_id").filter(
        (pl.col("step") >= pl.col("_n")) | (pl.col("step") < 0)
    )
    if len(beyond):
        r = beyond.row(0, named=True)
        raise InputError(
            f"{path}: series {r['series_id']!r} night {r['night']} {r['event']} at step "
            f"{r['step']} lies outside the series (steps 0..{r['_n'] - 1}); the events do not "
            "match this series file"
        )
    return events
