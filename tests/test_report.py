"""The sleep report: one onset/wakeup pair per night, exactly, and the actogram of a series."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import polars as pl
import pytest

from sleepdetect.core.errors import InputError
from sleepdetect.report import night_report, read_candidates, timeline, write_report

REPO = Path(__file__).resolve().parents[1]
H = 720  # steps per hour
DAY = 24 * H


def _series(days: float = 2.0, start: str = "2018-08-14 12:00:00", sid: str = "s1") -> pl.DataFrame:
    """A series starting at local `start` (UTC-4), flat signal, `days` long."""
    n = int(days * DAY)
    t0 = dt.datetime.fromisoformat(start)
    times = pl.datetime_range(t0, t0 + dt.timedelta(seconds=5 * (n - 1)), "5s", eager=True)
    return pl.DataFrame(
        {
            "series_id": sid,
            "step": np.arange(n, dtype=np.int64),
            "timestamp": times.dt.strftime("%Y-%m-%dT%H:%M:%S-0400"),
            "anglez": np.zeros(n, np.float32),
            "enmo": np.abs(np.sin(np.arange(n) / 500.0)).astype(np.float32) * 0.1,
        }
    )


# night of the 14th: onset 22:30 (step 7560), wakeup 06:45 on the 15th (step 13500)
# night of the 15th: onset 23:00 (step 25200), wakeup 07:10 on the 16th (step 31080)
TRUE = [("onset", 7560, 0.9), ("wakeup", 13500, 0.8), ("onset", 25200, 0.7), ("wakeup", 31080, 0.6)]
DECOYS = [
    ("wakeup", 8 * H, 0.95),  # 20:00 on the 14th, higher than the true wakeup but before the onset
    ("onset", 3 * H, 0.3),  # 15:00, an onset that pairs worse
    ("wakeup", 13500 + 2 * H, 0.2),  # 08:45, a later, weaker wakeup
    ("onset", DAY + 3 * H, 0.99),  # 15:00 on the 15th, inside the not-worn stretch: left out
]
NOT_WORN = (DAY + 2 * H, DAY + 5 * H)  # 14:00-17:00 on the 15th, 180 minutes


def _candidates(rows) -> pl.DataFrame:
    return pl.DataFrame(
        [("s1", step, event, score) for event, step, score in rows],
        schema={"series_id": pl.String, "step": pl.Int64, "event": pl.String, "score": pl.Float64},
        orient="row",
    )


def _line(days: float = 2.0) -> pl.DataFrame:
    df = _series(days)
    off = np.zeros(len(df), bool)
    off[NOT_WORN[0] : NOT_WORN[1]] = True
    return timeline(df, off)


def test_report_finds_the_true_pairs_exactly():
    table = night_report(_line(), _candidates(TRUE + DECOYS))
    assert table["night"].to_list() == ["2018-08-14", "2018-08-15"]
    first, second = table.row(0, named=True), table.row(1, named=True)
    assert (first["onset_step"], first["wakeup_step"]) == (7560, 13500)
    assert (first["onset_time"], first["wakeup_time"]) == (
        "2018-08-14 22:30:00",
        "2018-08-15 06:45:00",
    )
    assert (first["duration_min"], first["duration"]) == (495.0, "8:15")
    assert (first["onset_score"], first["wakeup_score"]) == (0.9, 0.8)
    assert (second["onset_step"], second["wakeup_step"]) == (25200, 31080)
    assert (second["onset_time"], second["wakeup_time"]) == (
        "2018-08-15 23:00:00",
        "2018-08-16 07:10:00",
    )
    assert (second["duration_min"], second["duration"]) == (490.0, "8:10")
    assert (first["not_worn_min"], second["not_worn_min"]) == (0.0, 180.0)
    assert (first["recorded_min"], first["note"]) == (1440.0, "")


def test_a_higher_wakeup_before_the_onset_is_not_chosen():
    rows = [("onset", 7560, 0.5), ("wakeup", 6000, 0.99), ("wakeup", 13500, 0.1)]
    night = night_report(_line(1.0), _candidates(rows)).row(0, named=True)
    assert (night["onset_step"], night["wakeup_step"], night["wakeup_score"]) == (7560, 13500, 0.1)


def test_product_rule_prefers_two_credible_events():
    # a sum would pair the sure onset with a wakeup of 0.06 (1.01 > 1.0); the product does not
    rows = [
        ("onset", 7000, 0.5),
        ("wakeup", 9000, 0.5),
        ("onset", 9500, 0.95),
        ("wakeup", 13500, 0.06),
    ]
    night = night_report(_line(1.0), _candidates(rows)).row(0, named=True)
    assert (night["onset_step"], night["wakeup_step"]) == (7000, 9000)
    rows = [
        ("onset", 7000, 0.9),
        ("wakeup", 6000, 0.9),
        ("onset", 7560, 0.5),
        ("wakeup", 9000, 0.5),
    ]
    night = night_report(_line(1.0), _candidates(rows)).row(0, named=True)
    assert (night["onset_step"], night["wakeup_step"]) == (7000, 9000)


def test_nights_without_a_pair_say_why():
    line = _line(3.0)
    rows = [("wakeup", 2000, 0.9), ("onset", 9000, 0.9), ("onset", DAY + 7560, 0.5)]
    table = night_report(line, _candidates(rows))
    notes = dict(zip(table["night"], table["note"], strict=True))
    assert notes["2018-08-14"] == "no onset before a wakeup"
    assert notes["2018-08-15"] == "no wakeup candidate"
    assert notes["2018-08-16"] == "no candidates"
    assert table["onset_step"].null_count() == 3
    only_off = night_report(line, _candidates([("onset", DAY + 3 * H, 0.9)]))
    assert only_off["note"][1] == "candidates only where not worn"


def test_partial_night_is_noted():
    line = timeline(_series(1.5, start="2018-08-14 18:00:00"), None)
    table = night_report(line, _candidates([("onset", 3330, 0.9), ("wakeup", 14 * H, 0.8)]))
    assert table["night"].to_list() == ["2018-08-14", "2018-08-15"]
    assert table["onset_time"][0] == "2018-08-14 22:37:30"
    assert table["note"][0] == "partial night (18.0 h recorded)"
    assert table["note"][1] == "no candidates; partial night (18.0 h recorded)"


def test_actogram_has_one_row_per_local_day(tmp_path):
    from sleepdetect.plots import plot_actogram

    line = _line()
    sleep = night_report(line, _candidates(TRUE + DECOYS))
    events = _candidates(TRUE).select("series_id", "event", "step")
    result = plot_actogram(line, tmp_path / "a.png", sleep=sleep, events=events, title="s1")
    # 12:00 on the 14th to 11:59:55 on the 16th touches three local days
    assert result.days == [dt.date(2018, 8, 14), dt.date(2018, 8, 15), dt.date(2018, 8, 16)]
    height, width = matplotlib.image.imread(result.path).shape[:2]
    assert (round(height), width) == (round((0.42 * 3 + 1.3) * 90), 11 * 90)
    one = plot_actogram(_line(0.4), tmp_path / "b.png")
    assert one.days == [dt.date(2018, 8, 14)]
    with pytest.raises(ValueError, match="bin_minutes"):
        plot_actogram(line, tmp_path / "c.png", bin_minutes=7)


# ---------------------------------------------------------------- on prepared data


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from sleepdetect.config import load_config
    from sleepdetect.data.prepare import prepare

    tmp = tmp_path_factory.mktemp("report")
    overrides = [
        f"data.dir={tmp / 'data'}",
        f"output.dir={tmp / 'out'}",
        "data.synthetic.series=2",
        "data.synthetic.days=2",
        "prepare.features=[anglez, enmo]",
        "infer.phase=train",
    ]
    cfg = load_config(REPO / "params" / "demo.yaml", overrides)
    return overrides, prepare(cfg)


def _submission(manifest, path: Path, extra: list[tuple] = ()) -> Path:
    """The labels as candidates (score 1), plus `extra` rows, written as a submission."""
    from sleepdetect.events.submission import write_submission

    labels = manifest.read_events().drop_nulls("step").select("series_id", "step", "event")
    rows = labels.with_columns(pl.lit(1.0).alias("score"))
    if extra:
        rows = pl.concat([rows, pl.DataFrame(list(extra), schema=rows.schema, orient="row")])
    return write_submission(rows, path)


def test_report_of_prepared_series_writes_table_and_actograms(prepared, tmp_path):
    _, manifest = prepared
    sub = _submission(manifest, tmp_path / "submission.csv")
    result = write_report(manifest, sub, tmp_path)
    labels = manifest.read_events().drop_nulls("step")
    onsets = labels.filter(pl.col("event") == "onset").sort("series_id", "step")["step"]
    assert result.table.drop_nulls("onset_step")["onset_step"].sort().to_list() == sorted(onsets)
    assert pl.read_csv(result.csv).columns == list(result.table.columns)
    assert sorted(result.actograms) == sorted(s.series_id for s in manifest.series)
    assert all(p.is_file() and p.stat().st_size > 0 for p in result.actograms.values())


def test_report_command(prepared, tmp_path, capsys, monkeypatch):
    from sleepdetect.cli import main

    overrides, manifest = prepared
    monkeypatch.chdir(REPO)
    sub = _submission(manifest, tmp_path / "submission.csv")
    first = manifest.series[0].series_id
    argv = ["report", "params/demo.yaml", *overrides, "--submission", str(sub), "--series", first]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        "onset score x wakeup score" in out and f"actogram: {tmp_path}/actogram-{first}.png" in out
    )
    assert set(pl.read_csv(tmp_path / "report.csv")["series_id"]) == {first}
    # the default submission (03_infer's) is not there yet: one line naming it and the fix
    assert main(["report", "params/demo.yaml", *overrides]) == 2
    err = capsys.readouterr().err
    assert "infer/train/submission.csv: no such submission; run infer first" in err


def test_mismatched_inputs_are_refused(prepared, tmp_path):
    _, manifest = prepared
    sid = manifest.series[0].series_id
    n = manifest.lengths[sid]
    stranger = _submission(
        manifest, tmp_path / "a" / "submission.csv", [("nope", 10, "onset", 0.5)]
    )
    with pytest.raises(InputError, match=r"series nope not in .*manifest.json.*run infer again"):
        write_report(manifest, stranger, tmp_path / "a")
    past = _submission(manifest, tmp_path / "b" / "submission.csv", [(sid, n, "onset", 0.5)])
    with pytest.raises(InputError, match=f"step {n} of series '{sid}' is outside its {n} steps"):
        write_report(manifest, past, tmp_path / "b")
    # a submission.json saying it was made from another file
    sub = _submission(manifest, tmp_path / "c" / "submission.csv")
    other = dict(manifest.sources["series"], fingerprint="0" * 64, path="/elsewhere.parquet")
    (tmp_path / "c" / "submission.json").write_text(json.dumps({"data": {"series": other}}))
    with pytest.raises(InputError, match="was made from /elsewhere.parquet"):
        write_report(manifest, sub, tmp_path / "c")
    # the same record of this data passes
    (tmp_path / "c" / "submission.json").write_text(json.dumps({"data": manifest.sources}))
    assert write_report(manifest, sub, tmp_path / "c", actograms=[]).actograms == {}
    with pytest.raises(InputError, match="series_id='nope' is not in"):
        write_report(manifest, sub, tmp_path / "c", series=["nope"])


def test_bad_submission_files(tmp_path):
    (tmp_path / "cols.csv").write_text("series_id,step,score\na,1,0.5\n")
    with pytest.raises(InputError, match="cols.csv: column 'event' is missing"):
        read_candidates(tmp_path / "cols.csv")
    (tmp_path / "event.csv").write_text("series_id,step,event,score\na,1,sleep,0.5\n")
    with pytest.raises(InputError, match="event 'sleep' at row 0"):
        read_candidates(tmp_path / "event.csv")
    (tmp_path / "empty.csv").write_text("series_id,step,event,score\na,,onset,0.5\n")
    with pytest.raises(InputError, match="column 'step' is empty at row 0"):
        read_candidates(tmp_path / "empty.csv")
    with pytest.raises(InputError, match="no such submission"):
        read_candidates(tmp_path / "missing.csv")


def test_series_and_score_pictures(tmp_path):
    from sleepdetect.plots import plot_event_scores, plot_series

    df = _series(1.0)
    off = np.zeros(len(df), bool)
    off[100:900] = True
    assert plot_series(df, None, tmp_path / "s.png", not_worn=off).stat().st_size > 0
    with pytest.raises(ValueError, match="not_worn has 3 values"):
        plot_series(df, None, tmp_path / "x.png", not_worn=off[:3])
    scores = pl.DataFrame({"series_id": "s1", "step": df["step"], "onset": 0.1, "wakeup": 0.2})
    png = plot_event_scores(
        scores,
        _candidates(TRUE),
        tmp_path / "scores.png",
        events=_candidates(TRUE).select("series_id", "event", "step"),
        first_timestamp=df["timestamp"][0],
    )
    assert matplotlib.image.imread(png).shape[:2] == (round(4.8 * 90), 14 * 90)


def test_nights_follow_the_local_clock_across_daylight_saving():
    """New York, 2018-11-04: the clock goes back at 02:00, so the night of the 3rd lasts 25
    hours and the next noon starts a new night by the clock, not 24 h after the last."""
    n = 3 * DAY
    t0 = dt.datetime(2018, 11, 2, 16, 0, tzinfo=dt.timezone.utc)  # 12:00 -0400
    utc = pl.datetime_range(t0, t0 + dt.timedelta(seconds=5 * (n - 1)), "5s", eager=True)
    stamps = utc.dt.convert_time_zone("America/New_York").dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    df = pl.DataFrame(
        {
            "series_id": "s1",
            "step": np.arange(n, dtype=np.int64),
            "timestamp": stamps,
            "anglez": np.zeros(n, np.float32),
            "enmo": np.zeros(n, np.float32),
        }
    )
    line = timeline(df, None)
    onset = 35 * H  # 23:00 on the 3rd: 24 h of the 2nd's night, then 11 h
    wakeup = onset + 9 * H  # 9 h later: 07:00 by the clock set back
    cand = _candidates([("onset", onset, 0.8), ("wakeup", wakeup, 0.7)])
    table = night_report(line, cand)
    assert table["night"].to_list() == ["2018-11-02", "2018-11-03", "2018-11-04"]
    assert table["recorded_min"].to_list()[:2] == [24 * 60, 25 * 60]
    second = table.row(1, named=True)
    assert (second["onset_time"], second["wakeup_time"]) == (
        "2018-11-03 23:00:00",
        "2018-11-04 07:00:00",
    )
    assert second["duration_min"] == 9 * 60  # elapsed time, not the clock's 8 h
