"""`convert --labels DIARY`: converted recordings + a sleep diary -> a training folder for the
recipe (`run params/real-sample.yaml data.dir=OUT`).

Writes OUT/train_series.parquet (every converted series, one after another) and
OUT/train_events.csv in the competition's layout (series_id, night, event, step, timestamp):
each diary night becomes an onset and a wakeup at the steps of those local times (to the
minute, as the competition's labels are). As in the competition's labels, a night of a
recording without a diary row is read as a night without sleep, so every such night is listed;
diary rows that do not parse or match no step are listed too, never dropped in silence.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from sleepdetect.core.files import atomic_path
from sleepdetect.devices.convert import Converted
from sleepdetect.diary import read_diary
from sleepdetect.report import timeline


def write_training(converted: list[Converted], diary: Path, out: Path) -> list[str]:
    """The training folder in `out` (module docstring); returns the lines of what was not used
    or is missing (also printed by `convert`)."""
    rows, problems = read_diary(diary)
    series = pl.concat([pl.read_parquet(c.parquet) for c in converted])
    events, missing = [], []
    for part in series.partition_by("series_id", maintain_order=True):
        sid = part["series_id"][0]
        line = timeline(part, None)  # the report's local clock and nights
        local, nights = line["local_time"], line["night"].unique().sort().to_list()
        mine = rows.filter(pl.col("series_id") == sid)
        known = set(mine["night"].to_list())
        missing += [f"{sid}, {n}: no diary row, taken as a night without sleep" for n in nights
                    if n.isoformat() not in known]  # fmt: skip
        for k, row in enumerate(mine.sort("night").iter_rows(named=True), start=1):
            found = [_step(part, local, row[f"diary_{e}"]) for e in ("onset", "wakeup")]
            if None in found:
                problems.append(f"diary night {sid}, {row['night']}: a time outside the recording")
                continue
            for event, step in zip(("onset", "wakeup"), found, strict=True):
                stamp = part["timestamp"][step]
                events.append((sid, k, event, step, stamp))
    names = set(series["series_id"].unique().to_list())
    problems += [f"diary night {r['series_id']}, {r['night']}: no recording of that name"
                 for r in rows.iter_rows(named=True) if r["series_id"] not in names]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "train_series.parquet") as tmp:
        series.drop("not_worn").write_parquet(tmp)
    table = pl.DataFrame(
        events,
        schema={
            "series_id": pl.String,
            "night": pl.Int64,
            "event": pl.String,
            "step": pl.Int64,
            "timestamp": pl.String,
        },
        orient="row",
    )
    with atomic_path(out / "train_events.csv") as tmp:
        table.write_csv(tmp)
    return problems + missing


def _step(part: pl.DataFrame, local: pl.Series, when: datetime) -> int | None:
    """The first step at local time `when` (to the minute), or None outside the recording."""
    minute = when.replace(second=0, microsecond=0)
    hits = (local == minute).arg_true()
    return int(part["step"][hits[0]]) if len(hits) else None
