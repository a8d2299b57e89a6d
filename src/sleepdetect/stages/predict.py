"""`python -m sleepdetect predict RECORDING...`: sleep per night from recordings, with the
model that ships, no training and no network.

Each recording (a device file, a CSV or parquet of raw samples, or a competition-schema
parquet of one or more series) goes convert (devices/) -> features -> the bundle's per-step
scores -> candidates -> the per-night report -> `OUT/<series_id>/`: report.csv,
candidates.csv, actogram.png and report.html (self-contained), plus predict.json, the record of
what they came from. `OUT/summary.csv` holds every night of every recording, and with
`--diary` `OUT/diary.csv`, `OUT/diary-summary.csv` and `OUT/bland-altman.png`.

A series whose record matches (same input file, model, threshold and options) is not done
again, so a batch stopped half-way resumes. `--workers N` runs N recordings at once;
`--shard i/n` takes every n-th file from the i-th, for a cluster's job array. A bad file is
named at the end; the others go on.
"""

from __future__ import annotations

import os
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml

from sleepdetect import __version__
from sleepdetect.baselines.hdcza import HDCZA
from sleepdetect.core.constants import STEP_SECONDS
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import atomic_path
from sleepdetect.core.fingerprints import source_record
from sleepdetect.core.paths import bundle_folders, resolve_path
from sleepdetect.core.records import check_record, write_record
from sleepdetect.data.features import SeriesSignals, build_features, not_worn_of
from sleepdetect.data.io import iter_series
from sleepdetect.devices.convert import Options, convert_file, failures, recordings, shard
from sleepdetect.diary import Comparison, compare, read_diary
from sleepdetect.events.postprocess import series_candidates
from sleepdetect.experiment import model_sha256
from sleepdetect.inference.bundles import Bundle, load_bundle, same_features
from sleepdetect.inference.ensemble import ensemble_scores
from sleepdetect.page import Page, write_page
from sleepdetect.plots import plot_actogram, plot_bland_altman
from sleepdetect.report import PAIR_RULE, night_report, read_report, report_table, timeline

DEFAULT_MODEL = "shipped:day_gru_synth"
RECORD = "predict.json"
REPORT_SETTINGS = "report.yaml"  # in a model's folder: its min_score, how it was chosen
FILES = ("report.csv", "candidates.csv", "actogram.png", "report.html")
# what the page's table shows (report.csv has every column)
PAGE_COLUMNS = ("night", "period", "onset_time", "wakeup_time", "duration", "not_worn_min",
                "onset_score", "wakeup_score", "score", "note")  # fmt: skip


@dataclass(frozen=True)
class PredictOptions:
    out: Path
    model: str = DEFAULT_MODEL
    convert: Options = field(default_factory=Options)
    min_score: float | None = None  # None: the model's report.yaml (0 without one)
    workers: int = 1
    shard: str | None = None
    diary: Path | None = None


@dataclass
class Outcome:
    """One input file's series: their tables, which were done before, and a failure."""

    source: Path
    tables: list[pl.DataFrame] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


def predict(
    inputs: list[str], options: PredictOptions
) -> tuple[list[Outcome], Path, Comparison | None]:
    """Every recording of `inputs` (files, folders), reported under options.out; returns the
    outcomes, summary.csv and, with a diary, its comparison. A recording's bad input is its
    outcome's error."""
    files = shard(recordings(inputs), options.shard)
    load_model(options.model)  # a bad model: one error, before any file
    options.out.mkdir(parents=True, exist_ok=True)
    if options.workers > 1 and len(files) > 1:
        threads = max(1, (os.cpu_count() or 1) // options.workers)
        with ProcessPoolExecutor(
            options.workers, mp_context=get_context("spawn"), initializer=torch.set_num_threads,
            initargs=(threads,),
        ) as pool:  # fmt: skip
            outcomes = list(pool.map(predict_file, files, [options] * len(files)))
    else:
        outcomes = [predict_file(f, options) for f in files]
    _refuse_twice(outcomes)
    tables = [t for o in outcomes for t in o.tables]
    nights = pl.concat(tables) if tables else report_table([])
    summary = options.out / "summary.csv"
    with atomic_path(summary) as tmp:
        nights.write_csv(tmp)
    diary = write_diary(nights, options.diary, options.out) if options.diary else None
    return outcomes, summary, diary


def _refuse_twice(outcomes: list[Outcome]) -> None:
    """A series_id met in two files: the second file's reports overwrote the first's, so both
    are failures, named, rather than one silently lost."""
    first: dict[str, Outcome] = {}
    for o in outcomes:
        for t in o.tables:
            sid = t["series_id"][0] if len(t) else None
            if sid in first and first[sid] is not o:
                for bad in (first[sid], o):
                    bad.error = (
                        f"series {sid!r} is in both {first[sid].source} and {o.source}; its "
                        f"reports in {sid}/ are of one of them: predict each file into its own "
                        "--out folder"
                    )
                    bad.tables = []
            first.setdefault(sid, o)


def predict_file(path: Path, options: PredictOptions) -> Outcome:
    """One input file, every series in it; an InputError becomes the outcome's error."""
    outcome = Outcome(path)
    try:
        folder, bundles = load_model(options.model)
        settings = model_settings(folder, bundles, options.min_score)
        for series, source, notes in _series_of(path, options):
            sid = series["series_id"][0]
            done = report_series(series, source, notes, bundles, settings, options.out / sid)
            outcome.tables.append(done[0])
            if done[1]:
                outcome.skipped.append(sid)
    except InputError as e:
        outcome.error = str(e)
    except Exception:  # a bug, not bad input: keep its traceback in the list at the end
        outcome.error = f"{path}: unexpected error\n{traceback.format_exc()}"
    return outcome


def _series_of(path: Path, options: PredictOptions):
    """(series frame, source record, notes) of each series a file holds: a competition-schema
    parquet as it is, anything else converted first (kept in OUT/converted/)."""
    if path.suffix.lower() == ".parquet" and _is_series_file(path):
        source = source_record(path)
        for df in iter_series(path):
            yield df, source, []
        return
    done = convert_file(path, options.out / "converted", options.convert)
    for df in iter_series(done.parquet):
        yield df, done.record["source"], done.notes


def _is_series_file(path: Path) -> bool:
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as e:  # not parquet, or unreadable: the user's file
        raise InputError(f"{path}: not a readable parquet file ({e})") from e
    return "anglez" in names and "enmo" in names


def load_model(name: str) -> tuple[Path, list[Bundle]]:
    """The folder of model `name` (a bundle, or an ensemble of bundles averaged, like the
    shipped default) and its bundles, which must share features and post-processing."""
    folder = resolve_path(name)
    bundles = [load_bundle(f) for f in bundle_folders(folder)]
    same_features(bundles)
    for b in bundles[1:]:
        if b.config.postprocess != bundles[0].config.postprocess:
            raise InputError(
                f"{name}: its members {bundles[0].path.name} and {b.path.name} post-process "
                "differently; give every member of an ensemble the same postprocess section"
            )
    return (bundles[0].path if len(bundles) == 1 else Path(folder)), bundles


def model_settings(folder: Path, bundles: list[Bundle], min_score: float | None) -> dict:
    """The model's identity and its report threshold (`report.yaml` in its folder, or given)."""
    chosen = {}
    path = folder / REPORT_SETTINGS
    if path.is_file():
        chosen = yaml.safe_load(path.read_text()) or {}
    return {
        "model": str(folder.name),
        "sha256": model_sha256(folder.resolve()),
        "min_score": float(min_score if min_score is not None else chosen.get("min_score", 0.0)),
        "min_score_from": "--min-score" if min_score is not None else str(path.name),
        "postprocess": asdict(bundles[0].config.postprocess),
    }


def report_series(
    series: pl.DataFrame,
    source: dict,
    notes: list[str],
    bundles: list[Bundle],
    settings: dict,
    out: Path,
) -> tuple[pl.DataFrame, bool]:
    """One series' files in `out` (FILES), made with the mean of `bundles`' scores, unless its
    record shows them made from the same inputs; returns its table and whether it was
    skipped."""
    inputs = {"source": source, "settings": settings, "version": __version__}
    if check_record(out / RECORD, inputs) is None and all((out / f).is_file() for f in FILES):
        return read_report(out / "report.csv"), True
    out.mkdir(parents=True, exist_ok=True)
    (out / RECORD).unlink(missing_ok=True)  # no record: no finished report of these inputs
    sid = series["series_id"][0]
    features = bundles[0].config.prepare.features
    signals = SeriesSignals(
        anglez=series["anglez"].to_numpy(),
        enmo=series["enmo"].to_numpy(),
        seconds_of_day=series["seconds_of_day"].to_numpy(),
    )
    x = build_features(signals, features)
    scores = ensemble_scores(bundles, [1.0] * len(bundles), x, None, 16, "cpu")
    day_repeat = x[:, features.index("day_repeat")] if "day_repeat" in features else None
    post = bundles[0].config.postprocess
    candidates = series_candidates(scores, sid, series["timestamp"][0], post, day_repeat)
    off = not_worn_of(series, day_repeat)
    line = timeline(series, off)
    absdiff = np.abs(np.diff(signals.anglez, prepend=signals.anglez[:1]))
    rest = HDCZA().rest_blocks(absdiff, signals.seconds_of_day, off)
    table = night_report(line, candidates, settings["min_score"], {sid: rest})
    with atomic_path(out / "candidates.csv") as tmp:
        candidates.write_csv(tmp)
    with atomic_path(out / "report.csv") as tmp:
        table.write_csv(tmp)
    title = f"{sid}: sleep found by {settings['model']}"
    png = plot_actogram(line, out / "actogram.png", sleep=table, title=title).path
    write_page(_page(sid, source, notes, settings, table, line, png), out / "report.html")
    write_record(out / RECORD, inputs)
    return table, False


def _page(sid, source, notes, settings, table, line, png) -> Page:
    worn_off = float(line["not_worn"].sum()) * STEP_SECONDS / 3600
    first, last = line["local_time"][0], line["local_time"][-1]
    found = int(table.filter(pl.col("period") == "main")["onset_time"].is_not_null().sum())
    nights = int((table["period"] == "main").sum())
    facts = {
        "recording": str(source.get("path", "")),
        "recorded": f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} (local clock)",
        "not worn": f"{worn_off:.1f} h",
        "nights with a sleep period": f"{found} of {nights}",
        "model": f"{settings['model']} (sha256 {settings['sha256'][:16]}), sleepdetect "
        f"{__version__}",
        "threshold": f"a night's best onset x wakeup score must reach {settings['min_score']:g} "
        f"(from {settings['min_score_from']})",
        "pairs": PAIR_RULE,
    }
    shown = table.select(PAGE_COLUMNS).rename({"not_worn_min": "not worn (min)"})
    return Page(f"Sleep report: {sid}", facts, shown, {"actogram": png}, list(notes))


def write_diary(report: pl.DataFrame, diary: Path, out: Path) -> Comparison:
    """diary.csv, diary-summary.csv, bland-altman.png and diary-unmatched.txt in `out`."""
    rows, problems = read_diary(diary)
    result = compare(report, rows, problems)
    with atomic_path(out / "diary.csv") as tmp:
        result.nights.write_csv(tmp)
    with atomic_path(out / "diary-summary.csv") as tmp:
        result.summary.write_csv(tmp)
    plot_bland_altman(result.nights, out / "bland-altman.png")
    with atomic_path(out / "diary-unmatched.txt") as tmp:
        tmp.write_text("".join(f"{line}\n" for line in result.unmatched))
    return result


def predict_command(inputs: list[str], options: PredictOptions) -> int:
    """The `predict` command: reports, then the summary and every failure; exit 1 if any."""
    outcomes, summary, diary = predict(inputs, options)
    for o in outcomes:
        if o.error:
            continue
        for t in o.tables:
            sid = t["series_id"][0] if len(t) else o.source.stem
            main = t.filter(pl.col("period") == "main")
            found = int(main["onset_time"].is_not_null().sum())
            extra = int((t["period"] == "extra").sum())
            state = " (unchanged, kept)" if sid in o.skipped else ""
            print(
                f"{options.out / sid / 'report.html'}: {found} of {len(main)} nights with sleep, "
                f"{extra} naps or second sleeps{state}"
            )
    print(f"summary: {summary}")
    if diary is not None:
        print(f"diary: {options.out / 'diary-summary.csv'}, {options.out / 'bland-altman.png'}")
        print(diary.summary)
        for line in diary.unmatched:
            print(f"  diary row not compared: {line}")
    return failures([o.error for o in outcomes if o.error], len(outcomes))
