"""`python -m sleepdetect score`: the metric on files, and the metrics CSV the pipeline writes.

Kept apart from events/metric.py, which stays pure (frames in, numbers out): this module reads
and checks the labels and submission CSVs (with the checks of sleepdetect.data.io, shared with
`read_events`, so a bad file gets the same message wherever it is read), prints the AP table and
writes metrics files.
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl

from sleepdetect.core.errors import InputError
from sleepdetect.core.files import atomic_path
from sleepdetect.data.io import check_event_names, parse_numbers, parse_steps, read_csv_text
from sleepdetect.events.metric import event_detection_ap_table

_SOLUTION_COLUMNS = ("series_id", "event", "step")
_SUBMISSION_COLUMNS = ("series_id", "step", "event", "score")


def read_solution_csv(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Labels CSV (series_id, event, step; e.g. train_events.csv) -> series_id, event, step."""
    frame = _read(path, _SOLUTION_COLUMNS, "labels (solution)")
    frame = frame.with_columns(parse_steps(frame["step"], path))
    check_event_names(frame, path)
    if frame["step"].drop_nulls().len() == 0:
        raise InputError(
            f"{path}: no row has a step, so there is no event to score against; give the labels "
            "file (e.g. train_events.csv), where labelled nights have a step"
        )
    return frame.select(_SOLUTION_COLUMNS)


def read_submission_csv(path: str | os.PathLike[str]) -> pl.DataFrame:
    """Submission CSV (row_id, series_id, step, event, score) -> series_id, step, event, score.

    A header-only file is a valid, empty submission (it scores 0)."""
    frame = _read(path, _SUBMISSION_COLUMNS, "submission")
    frame = frame.with_columns(
        parse_steps(frame["step"], path), parse_numbers(frame["score"], path)
    )
    check_event_names(frame, path)
    return frame.select(_SUBMISSION_COLUMNS)


def score_command(
    solution_path: str | os.PathLike[str], submission_path: str | os.PathLike[str]
) -> int:
    """Print the AP table of a submission CSV against a labels CSV; the last line is the score."""
    solution = read_solution_csv(solution_path)
    submission = read_submission_csv(submission_path)
    try:
        table, score = event_detection_ap_table(solution, submission)
    except InputError:
        raise
    except ValueError as e:  # what the readers could not see, e.g. steps too far apart
        raise InputError(f"{solution_path} against {submission_path}: {e}") from e

    labelled = solution.drop_nulls("step")
    gt_series = labelled["series_id"].unique().to_list()
    gt_events = labelled["event"].unique().to_list()
    usable = submission.drop_nulls().filter(
        pl.col("step").is_not_nan() & pl.col("score").is_not_nan()
    )
    scored = usable.filter(pl.col("series_id").is_in(gt_series) & pl.col("event").is_in(gt_events))
    print(
        f"solution: {labelled.height} events in {len(gt_series)} series "
        f"({', '.join(f'{e} {n}' for e, n in _counts(labelled))})"
    )
    print(
        f"submission: {submission.height} rows, {scored.height} scored; ignored: "
        f"{submission.height - usable.height} with a missing value, "
        f"{usable.height - scored.height} in series or of event types without labels"
    )
    print(format_table(table))
    print(f"{score:.6f}")
    return 0


def format_table(table: pl.DataFrame) -> str:
    """The AP table as text: one row per event type, one column per tolerance, then the mean."""
    events = table["event"].unique(maintain_order=True).to_list()
    tols = table["tolerance"].unique(maintain_order=True).to_list()
    head = ["event".ljust(8)] + [f"{t:g}".rjust(6) for t in tols] + ["mean".rjust(7)]
    lines = [" ".join(head)]
    for e in events:
        aps = table.filter(pl.col("event") == e)["ap"].to_list()
        cells = [e.ljust(8)] + [f"{a:6.4f}" for a in aps] + [f"{np.mean(aps):7.4f}"]
        lines.append(" ".join(cells))
    return "\n".join(lines)


def write_metrics(table: pl.DataFrame, score: float, path: str | os.PathLike[str]) -> None:
    """The AP table with a last row `score,,<score>`, written atomically as CSV."""
    schema = {"event": pl.String, "tolerance": pl.Float64, "ap": pl.Float64}
    rows = table.cast(schema) if len(table) else pl.DataFrame(schema=schema)  # type: ignore[arg-type]
    summary = pl.DataFrame({"event": ["score"], "tolerance": [None], "ap": [score]}, schema=schema)
    with atomic_path(path) as tmp:
        pl.concat([rows, summary]).write_csv(tmp)


def _counts(frame: pl.DataFrame) -> list[tuple[str, int]]:
    counts = frame.group_by("event").len().sort("event")
    return list(zip(counts["event"].to_list(), counts["len"].to_list(), strict=True))


def _read(path: str | os.PathLike[str], columns: tuple[str, ...], what: str) -> pl.DataFrame:
    """The file as text (`read_csv_text`'s checks), names stripped of surrounding blanks."""
    frame = read_csv_text(path, columns, what)
    return frame.with_columns(pl.col("series_id", "event").str.strip_chars())
