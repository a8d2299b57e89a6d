"""Write submission.csv, checked first: a file Kaggle would reject is never written."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from sleepdetect.core.constants import EVENTS
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import atomic_path

COLUMNS: tuple[str, ...] = ("row_id", "series_id", "step", "event", "score")


def write_submission(
    df: pl.DataFrame,
    path: str | os.PathLike[str],
    series_lengths: Mapping[str, int] | None = None,
) -> Path:
    """Validate candidates (series_id, step, event, score) and write them as a submission.

    The writer assigns row_id 0..n-1 (any row_id given is replaced) and writes the columns
    row_id, series_id, step, event, score in that order, atomically. It checks: the columns
    exist; no value is missing; steps are whole numbers, >= 0 and, with `series_lengths`
    (series_id -> number of steps), inside their series (which must be listed); events are
    onset or wakeup; scores are finite. An empty frame writes a header-only file, which is a
    valid submission. Raises InputError naming the problem and the fix.
    """
    where = f"submission for {path}"
    missing = [c for c in COLUMNS[1:] if c not in df.columns]
    if missing:
        raise InputError(
            f"{where}: column {missing[0]!r} is missing (got {', '.join(df.columns) or 'none'}); "
            f"candidates need {', '.join(COLUMNS[1:])} (postprocess.detect_events makes them)"
        )
    out = df.select(COLUMNS[1:])
    for col in COLUMNS[1:]:
        nulls = out[col].null_count()
        if nulls:
            i = int(out[col].is_null().arg_max())
            raise InputError(
                f"{where}: column {col!r} has {nulls} missing value(s), first at row {i}; "
                "drop those candidates or fill them in"
            )
    out = out.with_columns(
        pl.col("series_id").cast(pl.String),
        pl.col("event").cast(pl.String),
        _steps(out["step"], where),
        _scores(out["score"], where),
    )
    bad = ~out["event"].is_in(list(EVENTS))
    if bad.any():
        i = int(bad.arg_max())
        raise InputError(
            f"{where}: column 'event' holds {out['event'][i]!r} at row {i}; "
            f"events must be one of {', '.join(EVENTS)}"
        )
    if (out["step"] < 0).any():
        i = int((out["step"] < 0).arg_max())
        raise InputError(
            f"{where}: column 'step' holds {out['step'][i]} at row {i}; steps start at 0, so "
            "clip or drop candidates before the start of the series"
        )
    if series_lengths is not None:
        _check_inside(out, series_lengths, where)
    out = out.with_row_index("row_id").with_columns(pl.col("row_id").cast(pl.Int64))
    with atomic_path(path) as tmp:
        out.select(COLUMNS).write_csv(tmp)
    return Path(path)


def _steps(col: pl.Series, where: str) -> pl.Series:
    if col.dtype.is_integer() or col.dtype == pl.Null:  # Null: an empty frame without a schema
        return col.cast(pl.Int64)
    if not col.dtype.is_float():
        raise InputError(
            f"{where}: column 'step' is {col.dtype}, not numeric; give steps as integers"
        )
    whole = col.is_finite() & (col == col.round(0))
    if not whole.all():
        i = int((~whole).arg_max())
        raise InputError(
            f"{where}: column 'step' holds {col[i]} at row {i}, not a whole step; round the "
            "candidate steps to integers"
        )
    return col.cast(pl.Int64)


def _scores(col: pl.Series, where: str) -> pl.Series:
    if not (col.dtype.is_float() or col.dtype.is_integer() or col.dtype == pl.Null):
        raise InputError(f"{where}: column 'score' is {col.dtype}, not numeric; give numbers")
    col = col.cast(pl.Float64)
    finite = col.is_finite()
    if not finite.all():
        i = int((~finite).arg_max())
        raise InputError(
            f"{where}: column 'score' holds {col[i]} at row {i}; scores must be finite numbers "
            "(check the model output for NaN or inf)"
        )
    return col


def _check_inside(out: pl.DataFrame, series_lengths: Mapping[str, int], where: str) -> None:
    lengths = pl.DataFrame(
        {"series_id": list(series_lengths), "_length": [int(v) for v in series_lengths.values()]},
        schema={"series_id": pl.String, "_length": pl.Int64},
    )
    joined = out.with_row_index("_row").join(lengths, on="series_id", how="left")
    unknown = _first_row(joined, pl.col("_length").is_null())
    if unknown is not None:
        raise InputError(
            f"{where}: series {unknown['series_id']!r} (row {unknown['_row']}) is not among the "
            f"{len(series_lengths)} series given in series_lengths; drop its candidates or "
            "pass its length"
        )
    outside = _first_row(joined, pl.col("step") >= pl.col("_length"))
    if outside is not None:
        raise InputError(
            f"{where}: step {outside['step']} (row {outside['_row']}) is past the end of series "
            f"{outside['series_id']!r}, which has {outside['_length']} steps "
            f"(0..{outside['_length'] - 1}); clip candidates to the series"
        )


def _first_row(joined: pl.DataFrame, condition: pl.Expr) -> dict[str, Any] | None:
    """The first row, in input order, where `condition` holds: the one an error names."""
    hits = joined.filter(condition).sort("_row")
    return hits.row(0, named=True) if hits.height else None
