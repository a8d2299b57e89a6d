"""`python -m sleepdetect report`: sleep times per night from a submission, for researchers.

A submission is a pile of scored candidates, which the metric wants; a sleep diary wants one
onset and one wakeup per night. Nights run noon to noon in local clock time and are named by
the date of their evening, so they follow the clock across a daylight-saving change (that
night is 23 or 25 hours long). Each night gets the consistent pair of highest joint score:

    an onset and a wakeup of that night, onset step < wakeup step, maximising
    onset score x wakeup score (ties: the earlier onset, then the earlier wakeup).

The product, not the sum: a pair is only as believable as its weaker event, and the product
of two scores read as independent probabilities is the chance that both are right, where a sum
would pair a sure onset with any wakeup at all. Candidates inside not-worn stretches (the
device's non-wear column, or days the recording repeats: the `day_repeat` feature) are left
out: the device saw no sleep there.

A night whose best pair scores below `min_score` says "no sleep period found" rather than
inventing one (`predict` uses the threshold chosen for its model, `shipped/<name>/report.yaml`).

Naps and second sleeps come from another source, since the event models learned the
competition's labels, which mark only the main sleep of a night and so teach the model to keep
quiet at a nap's edges: still blocks (`rest`, HDCZA's rule: `baselines/hdcza.rest_blocks`) of
at least `EXTRA_MIN_MINUTES` in worn time that overlap no main period are extra rows, `period`
"extra", with HDCZA's score of the block (share of still steps x length / 24 h). A night
without a pair gets empty onset and wakeup and says why in `note`.

Reads the submission (series_id, step, event, score), the prepared phase it was made from (the
manifest: its series, lengths and source file, whose timestamps and enmo are read again) and,
when present, the submission.json beside it (checked to be of the same source data). Writes
report.csv and actogram-<series_id>.png (plots.plot_actogram), atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sleepdetect.config import Config, load_config
from sleepdetect.core.constants import EVENTS, STEP_SECONDS, STEPS_PER_HOUR
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import atomic_path
from sleepdetect.core.fingerprints import source_change
from sleepdetect.data.features import not_worn_of
from sleepdetect.data.io import iter_series
from sleepdetect.data.prepare import MANIFEST, Manifest, open_prepared
from sleepdetect.experiment import Experiment
from sleepdetect.plots import plot_actogram

NIGHT_START_HOUR = 12  # nights run noon to noon, local clock time
EXTRA_MIN_MINUTES = 30  # naps and second sleeps shorter than this are not reported
PAIR_RULE = (
    "one onset and one wakeup per noon-to-noon night: the pair with onset before wakeup of "
    "highest onset score x wakeup score (candidates in not-worn stretches left out)"
)
COLUMNS = (
    "series_id",
    "night",
    "period",
    "onset_time",
    "onset_step",
    "wakeup_time",
    "wakeup_step",
    "duration_min",
    "duration",
    "not_worn_min",
    "recorded_min",
    "onset_score",
    "wakeup_score",
    "score",
    "note",
)
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_STEP_MINUTES = STEP_SECONDS / 60
_FULL_NIGHT = 24 * STEPS_PER_HOUR
_FIX_INPUTS = (
    "report a submission with the prepared data it was made from: run infer again "
    "(python -m sleepdetect run PARAMS --only prepare,infer), or give that submission with "
    "--submission"
)


# ---------------------------------------------------------------- one series' clock


def timeline(series_df: pl.DataFrame, not_worn: np.ndarray | None) -> pl.DataFrame:
    """One series' steps with their local clock time and night: series_id, step, timestamp,
    enmo, local_time (wall clock, offset dropped), night (date of the evening), not_worn."""
    df = series_df.sort("step")
    if not_worn is None:
        not_worn = np.zeros(len(df), dtype=bool)
    if len(not_worn) != len(df):
        raise ValueError(f"not_worn has {len(not_worn)} values for {len(df)} steps")
    local = df["timestamp"].str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S", time_unit="ms")
    return df.select("series_id", pl.col("step").cast(pl.Int64), "timestamp", "enmo").with_columns(
        local.alias("local_time"),
        (local - pl.duration(hours=NIGHT_START_HOUR)).dt.date().alias("night"),
        pl.Series("not_worn", np.asarray(not_worn, dtype=bool)),
    )


# ---------------------------------------------------------------- the nights


def night_report(
    timeline_df: pl.DataFrame,
    candidates: pl.DataFrame,
    min_score: float = 0.0,
    rest: dict[str, list[tuple[int, int, float]]] | None = None,
) -> pl.DataFrame:
    """The per-night table (COLUMNS) of the series in `timeline_df` (see `timeline`) from their
    `candidates` (series_id, step, event, score); see the module docstring for the rules."""
    nights = (
        timeline_df.group_by("series_id", "night", maintain_order=True)
        .agg(
            pl.len().alias("recorded"),
            pl.col("not_worn").sum().alias("not_worn"),
        )
        .sort("series_id", "night")
    )
    cand = candidates.select(
        pl.col("series_id").cast(pl.String),
        pl.col("step").cast(pl.Int64),
        pl.col("event").cast(pl.String),
        pl.col("score").cast(pl.Float64),
    ).join(
        timeline_df.select("series_id", "step", "night", "local_time", "not_worn"),
        on=["series_id", "step"],
        how="inner",
    )
    by_night = {key: part for key, part in cand.group_by("series_id", "night")}
    night_of = _night_steps(timeline_df)
    parts = timeline_df.partition_by("series_id", as_dict=True)
    clock = {sid: part["local_time"] for (sid,), part in parts.items()}  # step i at row i
    rows = []
    for sid, night, recorded, not_worn in nights.iter_rows():
        part = by_night.get((sid, night))
        main = _main(part, min_score) if part is not None else {"note": "no candidates"}
        span = night_of[(sid, night)]
        extra = _extras(clock[sid], span, main, (rest or {}).get(sid, []))
        periods = [main, *extra]
        main.setdefault("note", "")
        if main.get("onset_step") is None and not_worn >= recorded / 2:
            main["note"] = (
                "not worn all day" if not_worn == recorded else f"{main['note']}; mostly not worn"
            )
        if recorded < _FULL_NIGHT:
            partial = f"partial night ({recorded * _STEP_MINUTES / 60:.1f} h recorded)"
            main["note"] = f"{main['note']}; {partial}" if main.get("note") else partial
        for i, period in enumerate(periods):
            rows.append(
                {
                    "series_id": sid,
                    "night": night.isoformat(),
                    "period": "main" if i == 0 else "extra",
                    "not_worn_min": not_worn * _STEP_MINUTES,
                    "recorded_min": recorded * _STEP_MINUTES,
                    **period,
                }
            )
    return report_table(rows)


def _main(part: pl.DataFrame, min_score: float) -> dict:
    """One night's main sleep period: the best consistent pair, or a note why none."""
    worn = part.filter(~pl.col("not_worn"))
    if worn.is_empty():
        return {"note": "candidates only where not worn"}
    onsets = worn.filter(pl.col("event") == "onset").sort("step")
    wakeups = worn.filter(pl.col("event") == "wakeup").sort("step")
    if onsets.is_empty() or wakeups.is_empty():
        return {"note": f"no {'onset' if onsets.is_empty() else 'wakeup'} candidate"}
    o_step, w_step = onsets["step"].to_numpy(), wakeups["step"].to_numpy()
    joint = np.outer(onsets["score"].to_numpy(), wakeups["score"].to_numpy())
    joint = np.where(o_step[:, None] < w_step[None, :], joint, -np.inf)
    if not np.isfinite(joint).any():
        return {"note": "no onset before a wakeup"}
    i, j = np.unravel_index(int(np.argmax(joint)), joint.shape)  # first max: earliest onset
    if joint[i, j] < min_score:
        return {
            "score": float(joint[i, j]),
            "note": f"no sleep period found (best pair scores {joint[i, j]:.3f}, below "
            f"{min_score:g})",
        }
    return _period(onsets.row(int(i), named=True), wakeups.row(int(j), named=True))


def _night_steps(timeline_df: pl.DataFrame) -> dict:
    """(series_id, night) -> [first, last] step of that night."""
    spans = timeline_df.group_by("series_id", "night").agg(
        pl.col("step").min().alias("a"), pl.col("step").max().alias("b")
    )
    return {(sid, night): (a, b) for sid, night, a, b in spans.iter_rows()}


def _extras(
    times: pl.Series,
    span: tuple[int, int],
    main: dict,
    rest: list[tuple[int, int, float]],
) -> list[dict]:
    """Still blocks [start, stop) that start in this night, last EXTRA_MIN_MINUTES or more and
    overlap no main period, as rows (module docstring). `times`: the series' local clock, step
    by step from step 0."""
    a, b = main.get("onset_step"), main.get("wakeup_step")
    out = []
    for start, stop, score in rest:
        if not span[0] <= start <= span[1]:
            continue
        if (stop - start) * _STEP_MINUTES < EXTRA_MIN_MINUTES:
            continue
        if a is not None and start <= b and a <= stop - 1:
            continue
        onset = {"step": start, "local_time": times[start], "score": None}
        wakeup = {"step": stop - 1, "local_time": times[stop - 1], "score": None}
        period = _period(onset, wakeup)
        period["score"] = score
        period["note"] = "nap or second sleep: a still block (HDCZA's rule)"
        out.append(period)
    return out


def _period(onset: dict, wakeup: dict) -> dict:
    minutes = (wakeup["step"] - onset["step"]) * _STEP_MINUTES
    return {
        "onset_time": onset["local_time"].strftime(_TIME_FORMAT),
        "onset_step": onset["step"],
        "wakeup_time": wakeup["local_time"].strftime(_TIME_FORMAT),
        "wakeup_step": wakeup["step"],
        "duration_min": minutes,
        "duration": f"{int(minutes // 60)}:{int(minutes % 60):02d}",
        "onset_score": onset["score"],
        "wakeup_score": wakeup["score"],
        "score": onset["score"] * wakeup["score"] if onset["score"] is not None else None,
    }


_SCHEMA = {
    "series_id": pl.String,
    "night": pl.String,
    "period": pl.String,
    "onset_time": pl.String,
    "onset_step": pl.Int64,
    "wakeup_time": pl.String,
    "wakeup_step": pl.Int64,
    "duration_min": pl.Float64,
    "duration": pl.String,
    "not_worn_min": pl.Float64,
    "recorded_min": pl.Float64,
    "onset_score": pl.Float64,
    "wakeup_score": pl.Float64,
    "score": pl.Float64,
    "note": pl.String,
}


def report_table(rows: list[dict]) -> pl.DataFrame:
    """Rows (dicts, missing keys empty) as a report table of COLUMNS."""
    filled = [{c: r.get(c) for c in COLUMNS} for r in rows]
    return pl.DataFrame(filled, schema=_SCHEMA, orient="row")


def read_report(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A report.csv written by `write_report` or `predict`, with its column types."""
    return pl.read_csv(path, schema=_SCHEMA)


def format_report(table: pl.DataFrame) -> str:
    """The table as plain text, every row and column, for a terminal or a notebook."""
    shown = table.with_columns(
        pl.col("onset_score", "wakeup_score", "score").round(3),
        pl.col("duration_min", "not_worn_min", "recorded_min").round(1),
    ).with_columns(pl.all().cast(pl.String).fill_null(""))  # an empty night shows blanks
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=400,
        fmt_str_lengths=60,
        tbl_hide_column_data_types=True,
        tbl_hide_dataframe_shape=True,
        tbl_formatting="ASCII_MARKDOWN",
    ):
        return str(shown)


# ---------------------------------------------------------------- inputs, checked


def read_candidates(path: str | os.PathLike[str]) -> pl.DataFrame:
    """A submission's candidates (series_id, step, event, score), or an InputError naming the
    file and what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: no such submission; run infer first (python -m sleepdetect run PARAMS "
            "--only infer) or name one with --submission FILE"
        )
    try:
        df = pl.read_csv(
            path,
            schema_overrides={"series_id": pl.String, "event": pl.String},
            infer_schema_length=10000,
        )
    except pl.exceptions.PolarsError as e:
        raise InputError(f"{path}: not a readable CSV ({e}); give a submission.csv") from e
    need = ("series_id", "step", "event", "score")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: column {missing[0]!r} is missing (got {', '.join(df.columns) or 'none'}); "
            f"a submission has {', '.join(need)}"
        )
    df = df.select(need)
    for col in need:
        if df[col].null_count():
            row = int(df[col].is_null().arg_max())
            raise InputError(f"{path}: column {col!r} is empty at row {row}; fill or drop it")
    bad = ~df["event"].is_in(list(EVENTS))
    if bad.any():
        i = int(bad.arg_max())
        raise InputError(
            f"{path}: event {df['event'][i]!r} at row {i}; events are {', '.join(EVENTS)}"
        )
    try:
        return df.with_columns(pl.col("step").cast(pl.Int64), pl.col("score").cast(pl.Float64))
    except pl.exceptions.PolarsError as e:
        raise InputError(f"{path}: steps must be whole numbers and scores numbers ({e})") from e


def check_inputs(submission: Path, candidates: pl.DataFrame, manifest: Manifest) -> None:
    """Refuse a submission that is not of `manifest`'s data: another source file (by its
    submission.json), series the manifest lacks, steps past a series' end, or a source file
    changed since it was prepared (its timestamps and enmo are read again)."""
    where = manifest.root / MANIFEST
    record_path = submission.with_name("submission.json")
    if record_path.is_file():
        try:
            made_from = json.loads(record_path.read_text())["data"]["series"]
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(
                f"{record_path}: not a submission record ({type(e).__name__}: {e}); {_FIX_INPUTS}"
            ) from e
        here = manifest.sources["series"]
        if (made_from.get("fingerprint"), made_from.get("size")) != (
            here["fingerprint"],
            here["size"],
        ):
            raise InputError(
                f"{submission} was made from {made_from.get('path')} (fingerprint "
                f"{str(made_from.get('fingerprint'))[:12]}), but {where} holds {here['path']} "
                f"(fingerprint {here['fingerprint'][:12]}); {_FIX_INPUTS}"
            )
    else:
        print(
            f"note: no submission.json beside {submission}: which data it was made from is "
            "unknown; only its series and steps are checked against the prepared data"
        )
    lengths = manifest.lengths
    unknown = sorted(set(candidates["series_id"].unique()) - set(lengths))
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise InputError(
            f"{submission}: series {shown} not in {where} (phase {manifest.phase}, "
            f"{len(lengths)} series); {_FIX_INPUTS}"
        )
    too_far = candidates.filter(
        pl.col("step") >= pl.col("series_id").replace_strict(lengths, return_dtype=pl.Int64)
    )
    if len(too_far) or (candidates["step"] < 0).any():
        bad = too_far if len(too_far) else candidates.filter(pl.col("step") < 0)
        sid, step = bad["series_id"][0], bad["step"][0]
        raise InputError(
            f"{submission}: step {step} of series {sid!r} is outside its {lengths[sid]} steps in "
            f"{where}; {_FIX_INPUTS}"
        )
    change = source_change(manifest.sources["series"], manifest.source)
    if change:
        raise InputError(
            f"{manifest.root}: its source changed since it was prepared: {change}; {_FIX_INPUTS}"
        )


def pick_series(manifest: Manifest, series_id: str) -> str:
    """`series_id`, or the first prepared series when it is empty; an InputError listing the
    prepared ones when it is not there."""
    ids = [s.series_id for s in manifest.series]
    if not series_id:
        return ids[0]
    if series_id not in ids:
        shown = ", ".join(ids[:8]) + (" ..." if len(ids) > 8 else "")
        raise InputError(
            f"series_id={series_id!r} is not in {manifest.root / MANIFEST}; it holds {shown}"
        )
    return series_id


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class Report:
    """What `write_report` wrote: the table, its CSV and one actogram per series asked for."""

    table: pl.DataFrame
    csv: Path
    actograms: dict[str, Path]


def write_report(
    manifest: Manifest,
    submission: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    actograms: Iterable[str] | None = None,
    series: Iterable[str] | None = None,
) -> Report:
    """report.csv and actogram-<series_id>.png in `out_dir` for `submission`'s candidates on
    the prepared series of `manifest` (every series, or `series`); actograms for `actograms`
    (None: every reported series). Reads the source file once, series by series."""
    submission, out_dir = Path(submission), Path(out_dir)
    candidates = read_candidates(submission)
    check_inputs(submission, candidates, manifest)
    wanted = list(series) if series is not None else [s.series_id for s in manifest.series]
    for sid in wanted:
        pick_series(manifest, sid)
    drawn = set(wanted if actograms is None else actograms)
    labels = manifest.read_events() if manifest.events else None
    out_dir.mkdir(parents=True, exist_ok=True)
    tables, pngs = [], {}
    for df in iter_series(manifest.source, wanted):
        sid = df["series_id"][0]
        line = timeline(df, not_worn_of(df, manifest.feature(sid, "day_repeat")))
        table = night_report(line, candidates.filter(pl.col("series_id") == sid))
        tables.append(table)
        if sid in drawn:
            events = labels.filter(pl.col("series_id") == sid) if labels is not None else None
            pngs[sid] = plot_actogram(
                line,
                out_dir / f"actogram-{sid}.png",
                sleep=table,
                events=events,
                title=f"{sid}: {manifest.phase}, detected sleep from {submission.name}",
            ).path
    table = pl.concat(tables) if tables else report_table([])
    csv = out_dir / "report.csv"
    with atomic_path(csv) as tmp:
        table.write_csv(tmp)
    return Report(table, csv, pngs)


def locate(cfg: Config, submission: str | os.PathLike[str] | None = None) -> tuple[Manifest, Path]:
    """The prepared `infer.phase` of this experiment and the submission to report (default:
    the one 03_infer wrote, `infer/<phase>/submission.csv`)."""
    phase = cfg.infer.phase
    manifest = open_prepared(cfg, phase, features=[], fix=_FIX_INPUTS)
    path = Path(submission) if submission else Experiment.of(cfg).submission(phase)
    return manifest, path


def report_command(
    params: str,
    overrides: list[str],
    submission: str | None = None,
    out: str | None = None,
    series: list[str] | None = None,
) -> int:
    """The `report` command: write and print the report of an experiment's submission."""
    manifest, path = locate(load_config(params, overrides), submission)
    result = write_report(manifest, path, Path(out) if out else path.parent, series=series)
    print(f"pairs: {PAIR_RULE}")
    print(format_report(result.table))
    paired = result.table["onset_step"].is_not_null().sum()
    print(f"{paired} of {len(result.table)} nights with a sleep period")
    print(f"report: {result.csv}")
    for png in result.actograms.values():
        print(f"actogram: {png}")
    return 0
