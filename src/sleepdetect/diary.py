"""`--diary FILE`: the detected nights against a sleep diary, as GGIR compares with its
sleeplog.

The diary is a CSV of `recording, date, onset, wakeup`: the recording's name (its series_id:
the file name without extension), the date of the night's evening, and clock times (`22:45`,
or whole dates and times). An onset clock time before noon falls after midnight; a wakeup is
the first such clock time after the onset. Each night gets detected minus diary, in minutes;
the summary gives, per event, the mean difference (bias), the mean absolute difference and
the 95% limits of agreement (Bland and Altman). Rows that do not parse, or match no reported
night, are listed with the reason, never dropped in silence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from sleepdetect.core.errors import InputError

COLUMNS = ("recording", "date", "onset", "wakeup")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass
class Comparison:
    """Per-night differences, their summary, and the diary rows that matched nothing."""

    nights: pl.DataFrame  # series_id, night, diary and detected times, *_diff_min
    summary: pl.DataFrame  # event, nights, mean_diff_min, mean_abs_diff_min, sd, limits
    unmatched: list[str]


def read_diary(path: str | os.PathLike[str]) -> tuple[pl.DataFrame, list[str]]:
    """The diary's rows with parsed onset and wakeup datetimes, and a line for each row that
    does not parse. A file that is not such a CSV is an InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such diary file; a diary is a CSV of {', '.join(COLUMNS)}")
    try:
        df = pl.read_csv(path, infer_schema_length=0)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable CSV ({e})") from e
    cols = {c.strip().lower(): c for c in df.columns}
    missing = [c for c in COLUMNS if c not in cols]
    if missing:
        raise InputError(
            f"{path}: column {missing[0]!r} is missing (got {', '.join(df.columns)}); a diary "
            f"has {', '.join(COLUMNS)}, e.g. rec01,2024-03-30,22:45,06:30"
        )
    rows, problems = [], []
    for i, raw in enumerate(df.select([cols[c] for c in COLUMNS]).iter_rows(), start=2):
        rec, night, onset, wakeup = (str(v).strip() if v is not None else "" for v in raw)
        try:
            evening = date.fromisoformat(night)
            on = _when(onset, evening, after=datetime.combine(evening, time(12)))
            wk = _when(wakeup, evening, after=on)
        except ValueError as e:
            problems.append(f"{path} line {i} ({rec}, {night}): {e}")
            continue
        rows.append({"series_id": rec, "night": evening.isoformat(), "diary_onset": on,
                     "diary_wakeup": wk})  # fmt: skip
    schema = {"series_id": pl.String, "night": pl.String, "diary_onset": pl.Datetime("us"),
              "diary_wakeup": pl.Datetime("us")}  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row"), problems


def _when(text: str, evening: date, after: datetime) -> datetime:
    """A clock time (the first one after `after`) or a whole date and time."""
    if not text:
        raise ValueError("empty time")
    try:
        return datetime.fromisoformat(text) if len(text) > 8 else _first_after(text, after)
    except ValueError:
        raise ValueError(f"{text!r} is not a time like 22:45 or 2024-03-30 22:45") from None


def _first_after(clock: str, after: datetime) -> datetime:
    t = time.fromisoformat(clock)
    at = datetime.combine(after.date(), t)
    return at if at > after else at + timedelta(days=1)


def compare(report: pl.DataFrame, diary: pl.DataFrame, problems: list[str]) -> Comparison:
    """Match the diary's nights with the report's main periods (same series_id and night)."""
    main = report.filter(pl.col("period") == "main").select(
        "series_id",
        "night",
        pl.col("onset_time").str.to_datetime(_TIME_FORMAT).alias("onset"),
        pl.col("wakeup_time").str.to_datetime(_TIME_FORMAT).alias("wakeup"),
    )
    joined = diary.join(main, on=["series_id", "night"], how="left")
    unmatched = list(problems)
    known = set(report["series_id"].unique())
    for row in joined.filter(pl.col("onset").is_null()).iter_rows(named=True):
        where = f"diary night {row['series_id']}, {row['night']}"
        if row["series_id"] not in known:
            unmatched.append(f"{where}: no recording of that name was reported")
        elif main.filter((pl.col("series_id") == row["series_id"]) & (pl.col("night") ==
                         row["night"])).is_empty():  # fmt: skip
            unmatched.append(f"{where}: the recording has no such night")
        else:
            unmatched.append(f"{where}: no sleep period was detected that night")
    nights = joined.drop_nulls("onset").with_columns(
        ((pl.col("onset") - pl.col("diary_onset")).dt.total_seconds() / 60).alias("onset_diff_min"),
        ((pl.col("wakeup") - pl.col("diary_wakeup")).dt.total_seconds() / 60).alias(
            "wakeup_diff_min"
        ),
    )
    nights = nights.with_columns(
        (pl.col("wakeup_diff_min") - pl.col("onset_diff_min")).alias("duration_diff_min")
    )
    return Comparison(nights, _summary(nights), unmatched)


def _summary(nights: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for event in ("onset", "wakeup", "duration"):
        d = nights[f"{event}_diff_min"].to_numpy().astype(float)
        sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
        mean = float(d.mean()) if len(d) else float("nan")
        rows.append(
            {
                "event": event,
                "nights": len(d),
                "mean_diff_min": mean,
                "mean_abs_diff_min": float(np.abs(d).mean()) if len(d) else float("nan"),
                "sd_diff_min": sd,
                "lower_limit_min": mean - 1.96 * sd,
                "upper_limit_min": mean + 1.96 * sd,
            }
        )
    return pl.DataFrame(rows)
