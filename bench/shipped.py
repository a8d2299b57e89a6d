"""The shipped model on the real nights of ../shared/data/cmi: its score, HDCZA's beside it, and
the nested choice of the report's "no sleep period found" threshold.

The shipped model (shipped:day_gru_synth) learned from synthetic series only, so its scores of
these nights are out of fold by construction, and its post-processing is its bundle's own:
nothing is chosen on them. The threshold is: each night's best onset x wakeup score, called
"sleep" when it reaches the threshold; a night is right when that agrees with its labels
(labelled nights hold sleep, nights without labels do not). For each of 5 blocks of
contiguous nights the threshold is chosen on the other nights from GRID (the most nights
right; among ties the middle of the tied thresholds), then applied to the block: the nested
share of nights right is the figure reported. The threshold chosen on all nights goes to
the model's folder (report.yaml) with --write.

    .venv/bin/python bench/shipped.py [--model FOLDER] [--write]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from sleepdetect.baselines.hdcza import HDCZA
from sleepdetect.data.features import not_worn_of
from sleepdetect.data.io import read_events, read_series
from sleepdetect.events.metric import event_detection_ap_table
from sleepdetect.report import timeline
from sleepdetect.stages.predict import (
    DEFAULT_MODEL,
    REPORT_SETTINGS,
    load_model,
    model_settings,
    report_series,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "cmi"
# peak heights are in [0, 1]; mass candidates score the score mass a minute could match, up to
# ~1e3, so a pair up to ~1e6: thresholds from 0.001 to 1e6, three a decade
GRID = [0.0] + [float(f"{m}e{k}") for k in range(-3, 7) for m in (1, 2, 5)]
N_BLOCKS = 5


def nights_table(report: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """One row per whole night: its best pair's score and whether it holds labelled sleep."""
    main = report.filter((pl.col("period") == "main") & (pl.col("recorded_min") >= 1440))
    labelled = []
    for row in main.iter_rows(named=True):
        lo = pl.col("step") >= row["first_step"]
        hi = pl.col("step") <= row["last_step"]
        labelled.append(events.filter(lo & hi).height > 0)
    return main.select("night", pl.col("score").fill_null(0.0)).with_columns(
        pl.Series("labelled", labelled)
    )


def choose(scores: np.ndarray, labelled: np.ndarray) -> float:
    right = np.array([((scores >= t) == labelled).sum() for t in GRID])
    best = np.flatnonzero(right == right.max())
    return GRID[int(best[len(best) // 2])]


def nested(nights: pl.DataFrame) -> tuple[float, list[float]]:
    scores, labelled = nights["score"].to_numpy(), nights["labelled"].to_numpy()
    blocks = np.array_split(np.arange(len(scores)), N_BLOCKS)
    right, chosen = 0, []
    for block in blocks:
        rest = np.setdiff1d(np.arange(len(scores)), block)
        t = choose(scores[rest], labelled[rest])
        chosen.append(t)
        right += int(((scores[block] >= t) == labelled[block]).sum())
    return right / len(scores), chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the chosen threshold")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a bundle or ensemble folder")
    args = parser.parse_args()
    if not (DATA / "train_series.parquet").is_file():
        raise SystemExit(f"{DATA}: the shared real series is not there")
    series = read_series(DATA / "train_series.parquet")
    events = read_events(DATA / "train_events.csv").drop_nulls("step")
    folder, bundles = load_model(args.model)
    settings = model_settings(folder, bundles, 0.0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sid = series["series_id"][0]
        source = {"path": str(DATA / "train_series.parquet")}
        report, _ = report_series(series, source, [], bundles, settings, Path(tmp) / sid)
        candidates = pl.read_csv(Path(tmp) / sid / "candidates.csv")
    seconds = time.perf_counter() - t0
    report = report.join(_night_spans(series), on="night", how="left")
    nights = nights_table(report, events)
    acc, chosen = nested(nights)
    final = choose(nights["score"].to_numpy(), nights["labelled"].to_numpy())

    ap = _ap(events, candidates)
    hdcza = _ap(events, _hdcza_candidates(series))
    rows = [
        ("shipped model (synthetic only), its own post-processing", ap),
        ("HDCZA (GGIR's parameters)", hdcza),
    ]
    print(f"{'on the 10 labelled real nights':58} | score | onset | wakeup")
    for name, table in rows:
        print(f"{name:58} | {table['score']:.3f} | {table['onset']:.3f} | {table['wakeup']:.3f}")
    print(f"\nper-night best pair scores (the shipped model, {seconds:.1f} s for the series):")
    print(nights)
    print(
        f"threshold: chosen per block {chosen}; nested share of nights right {acc:.3f} "
        f"({len(nights)} nights, {int((~nights['labelled']).sum())} without labels); "
        f"chosen on all nights: {final}"
    )
    result = {
        "shipped_ap": ap,
        "hdcza_ap": hdcza,
        "threshold": final,
        "nested_right": acc,
        "per_block": chosen,
        "nights": len(nights),
    }
    print(json.dumps(result))
    if args.write:
        out = folder / REPORT_SETTINGS
        out.write_text(
            "# The report's threshold for this model: a night whose best onset x wakeup score is\n"
            "# below min_score says 'no sleep period found'. Chosen by bench/shipped.py on the\n"
            f"# real nights of ../shared/data/cmi ({len(nights)} whole nights, "
            f"{int((~nights['labelled']).sum())} without labels), nested over {N_BLOCKS} blocks\n"
            f"# of nights: {acc:.3f} of nights right (per block: {chosen}).\n"
            + yaml.safe_dump({"min_score": final})
        )
        print(f"wrote {out}")


def _night_spans(series: pl.DataFrame) -> pl.DataFrame:
    """night (the report's: noon to noon, local) -> its first and last step."""
    return (
        timeline(series, None)
        .group_by(pl.col("night").cast(pl.String))
        .agg(pl.col("step").min().alias("first_step"), pl.col("step").max().alias("last_step"))
    )


def _ap(events: pl.DataFrame, candidates: pl.DataFrame) -> dict:
    table, score = event_detection_ap_table(events, candidates)
    by = table.group_by("event").agg(pl.col("ap").mean())
    return {"score": score, **dict(by.iter_rows())}


def _hdcza_candidates(series: pl.DataFrame) -> pl.DataFrame:
    anglez = series["anglez"].to_numpy().astype(np.float64)
    absdiff = np.abs(np.diff(anglez, prepend=anglez[:1]))
    windows = HDCZA().series_windows(
        absdiff,
        series["enmo"].to_numpy(),
        series["seconds_of_day"].to_numpy(),
        not_worn_of(series).astype(np.float64),
    )
    sid = series["series_id"][0]
    return pl.DataFrame(
        {
            "series_id": [sid] * (2 * len(windows)),
            "step": [s for w in windows for s in (w.onset, w.wakeup)],
            "event": ["onset", "wakeup"] * len(windows),
            "score": [w.score for w in windows for _ in range(2)],
        }
    )


if __name__ == "__main__":
    main()
