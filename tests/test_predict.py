"""`predict`: recordings -> the shipped model -> sleep per night, with no training; the HTML
page in a real browser, the diary comparison, batches (resume, workers, shards, bad files)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sleepdetect.cli import main
from sleepdetect.config import load_config
from sleepdetect.core.errors import InputError
from sleepdetect.core.paths import bundle_folders, resolve_path
from sleepdetect.data.io import read_events, read_series
from sleepdetect.data.synthetic import TIME_ZONE, timestamps, write_raw, write_synthetic
from sleepdetect.devices.convert import Options
from sleepdetect.diary import read_diary
from sleepdetect.page import Page, write_page
from sleepdetect.stages.predict import DEFAULT_MODEL, PredictOptions, predict

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SHA256 = {  # the members of the shipped ensemble, in its ensemble.yaml's order
    "fold0": "d6a54be1568073293a78c7cacbd228c91f9a0b315684c538c5f5e5742879c15a",
    "fold0-seed1": "2fa86fc205f036cbffb06a32abd5ae7979af22e64153274bf18eb2e39a4b9154",
    "fold0-seed2": "c253a0b3cdfd5af7413bcdbd9521fa68aa05b2e3a16cc7de6b80782b9d34e51c",
}
RECIPE_OUTSIDE = "shipped:day_gru_synth_v1"  # the real recipe's outside model; fold0 its start
RECIPE_OUTSIDE_SHA256 = {
    "fold0": "e816f99ef8f60f766a82f8a4ca48feb323a1f7ec09be056197b4eb7d30de9c53",
    "fold0-seed1": "a4af4aa8905bd7ecf7dac0de1b25f2a11c902456fefa5186c6e689983ac7f1ba",
    "fold0-seed2": "1b090afeb46362134cdd027ab0aad08ba2960992fb89a56242972acb817fcc22",
}
H = 720


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A 4-day synthetic raw recording at 30 Hz with nights, a not-worn day and a nap."""
    path = tmp_path_factory.mktemp("raw") / "wrist01.parquet"
    return path, write_raw(path, days=4.0, hz=30.0, seed=0)


@pytest.fixture(scope="module")
def predicted(recording, tmp_path_factory):
    path, truth = recording
    out = tmp_path_factory.mktemp("reports")
    options = PredictOptions(out=out, convert=Options(timezone=TIME_ZONE))
    outcomes, summary, _ = predict([str(path)], options)
    assert outcomes[0].error is None
    return out, truth, pl.read_csv(summary)


def test_the_shipped_model_is_the_committed_one():
    def sha(folder: Path) -> str:
        return hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()

    def members_of(name: str, shas: dict[str, str]) -> list[str]:
        ensemble = Path(resolve_path(name))
        members = [Path(m) for m in bundle_folders(str(ensemble))]
        assert [m.name for m in members] == list(shas)
        for m in members:
            assert sha(m) == shas[m.name] and sha(m) in (ensemble / "MADE.md").read_text()
        return [str(m) for m in members]

    members_of(DEFAULT_MODEL, SHIPPED_SHA256)
    outside = members_of(RECIPE_OUTSIDE, RECIPE_OUTSIDE_SHA256)
    cfg = load_config(REPO / "params" / "real-sample.yaml")
    assert cfg.model.init_from == outside[0] and cfg.ensemble.outside == outside
    with pytest.raises(InputError, match="there are: day_gru_synth, day_gru_synth_v1"):
        resolve_path("shipped:nothing")


def test_an_ensemble_predicts_with_its_members_mean_and_a_retrained_member_redoes_it(tmp_path):
    import yaml

    from sleepdetect.data.features import SeriesSignals, build_features
    from sleepdetect.events.postprocess import series_candidates
    from sleepdetect.inference.ensemble import ensemble_scores
    from sleepdetect.stages.predict import load_model, model_settings

    folder, shipped = load_model(DEFAULT_MODEL)
    assert folder == Path(resolve_path(DEFAULT_MODEL)) and len(shipped) == 3
    chosen = yaml.safe_load((folder / "report.yaml").read_text())["min_score"]
    assert model_settings(folder, shipped, None)["min_score"] == chosen
    ens = tmp_path / "ens"
    for b in shipped[:2]:
        shutil.copytree(b.path, ens / b.path.name)
    (ens / "ensemble.yaml").write_text(f"members: [{shipped[0].path.name}, {shipped[1].path.name}]")
    write_synthetic(tmp_path / "syn", n_series=1, days=1.5, seed=3)
    series = read_series(tmp_path / "syn" / "train_series.parquet")
    options = PredictOptions(out=tmp_path / "out", model=str(ens))
    (done,), _, _ = predict([str(tmp_path / "syn" / "train_series.parquet")], options)
    assert done.error is None and not done.skipped
    sid = series["series_id"][0]
    features = shipped[0].config.prepare.features
    x = build_features(SeriesSignals(series["anglez"].to_numpy(), series["enmo"].to_numpy(),
                                     series["seconds_of_day"].to_numpy()), features)  # fmt: skip
    mean = ensemble_scores(shipped[:2], [1.0, 1.0], x, None, 16, "cpu")
    expected = series_candidates(mean, sid, series["timestamp"][0], shipped[0].config.postprocess,
                                 x[:, features.index("day_repeat")])  # fmt: skip
    found = pl.read_csv(options.out / sid / "candidates.csv")
    np.testing.assert_array_equal(found["step"], expected["step"])
    np.testing.assert_allclose(found["score"], expected["score"], rtol=1e-5)

    (kept,), _, _ = predict([str(tmp_path / "syn" / "train_series.parquet")], options)
    assert kept.skipped == [sid]  # nothing changed: kept
    weights = ens / shipped[1].path.name / "model.pt"
    shutil.copy(shipped[2].path / "model.pt", weights)  # the member retrained
    (again,), _, _ = predict([str(tmp_path / "syn" / "train_series.parquet")], options)
    assert again.error is None and not again.skipped  # made again, not kept
    changed = ens / shipped[1].path.name / "config.yaml"
    changed.write_text(changed.read_text().replace("day_start_hour: 5", "day_start_hour: 12"))
    with pytest.raises(InputError, match="post-process differently"):
        load_model(str(ens))


def test_the_whole_path_recovers_planted_nights_nap_and_not_worn_day(predicted):
    out, truth, table = predicted
    plan = truth.plan
    main_rows = table.filter(pl.col("period") == "main")
    found = main_rows.drop_nulls("onset_step")
    for k in np.flatnonzero(plan.labelled):
        near = found.filter((pl.col("onset_step") - int(plan.onset[k])).abs() < 30 * 12)
        assert len(near) == 1, f"night {k} not found"
        assert abs(near["wakeup_step"][0] - int(plan.wakeup[k])) < 30 * 12
    skipped = [k for k in range(len(plan.labelled)) if not plan.labelled[k]]
    assert skipped  # the not-worn night: no sleep period, and the table says why
    off = main_rows.filter(pl.col("onset_step").is_null())
    assert len(off) == len(skipped) and off["note"].str.contains("not worn").all()
    assert off["not_worn_min"].min() > 12 * 60
    (nap_start, nap_stop), = plan.naps  # fmt: skip
    extra = table.filter(pl.col("period") == "extra")
    hit = extra.filter((pl.col("onset_step") < nap_stop) & (pl.col("wakeup_step") > nap_start))
    assert len(hit) == 1
    overlap = min(hit["wakeup_step"][0], nap_stop) - max(hit["onset_step"][0], nap_start)
    assert overlap > 0.8 * (nap_stop - nap_start)
    sid = table["series_id"][0]
    assert sid == "wrist01"
    for name in ("report.csv", "candidates.csv", "actogram.png", "report.html", "predict.json"):
        assert (out / sid / name).is_file()


def test_a_second_run_skips_what_is_done_and_redoes_what_changed(recording, predicted, capsys):
    path, _ = recording
    out, _, table = predicted
    args = ["predict", str(path), "--out", str(out), "--timezone", TIME_ZONE]
    assert main(args) == 0
    assert "(unchanged, kept)" in capsys.readouterr().out
    assert main([*args, "--min-score", "1e12"]) == 0  # another threshold: made again
    printed = capsys.readouterr().out
    assert "unchanged" not in printed
    redone = pl.read_csv(out / "summary.csv")
    assert redone.filter(pl.col("period") == "main")["onset_step"].null_count() == len(
        redone.filter(pl.col("period") == "main")
    )  # nothing reaches 1e12 (a pair of mass candidates scores about 1e6)
    assert main(args) == 0  # back to the model's threshold
    assert pl.read_csv(out / "summary.csv").equals(table)


def test_a_low_night_says_no_sleep_period_found(predicted, tmp_path, recording):
    path, _ = recording
    out, _, table = predicted
    best = table.filter(pl.col("period") == "main")["score"].drop_nulls().min()
    options = PredictOptions(out=tmp_path, convert=Options(timezone=TIME_ZONE),
                             min_score=best + 1e-6)  # fmt: skip
    shutil.copytree(out / "converted", tmp_path / "converted")  # converted already
    _, summary, _ = predict([str(path)], options)
    rows = pl.read_csv(summary).filter(pl.col("period") == "main")
    low = rows.filter(pl.col("score") == best)
    assert len(low) == 1 and low["onset_time"][0] is None
    assert low["note"][0].startswith("no sleep period found (best pair scores")


def test_workers_and_shards_give_the_same_reports(tmp_path):
    write_synthetic(tmp_path / "syn", n_series=2, days=1.5, seed=3)
    series = pl.read_parquet(tmp_path / "syn" / "train_series.parquet")
    folder = tmp_path / "in"
    folder.mkdir()
    for sid, part in series.group_by("series_id"):
        part.write_parquet(folder / f"{sid[0]}.parquet")
    one = PredictOptions(out=tmp_path / "one")
    predict([str(folder)], one)
    two = PredictOptions(out=tmp_path / "two", workers=2)
    predict([str(folder)], two)
    for k in (1, 2):
        predict([str(folder)], PredictOptions(out=tmp_path / "shards", shard=f"{k}/2"))
    ids = sorted(series["series_id"].unique())
    for sid in ids:
        first = pl.read_csv(tmp_path / "one" / sid / "report.csv")
        assert first.equals(pl.read_csv(tmp_path / "two" / sid / "report.csv"))
        assert first.equals(pl.read_csv(tmp_path / "shards" / sid / "report.csv"))
    assert sorted(pl.read_csv(tmp_path / "two" / "summary.csv")["series_id"].unique()) == ids


def test_a_batch_goes_past_bad_files_and_lists_them(tmp_path, capsys):
    write_synthetic(tmp_path / "syn", n_series=2, days=1.5, seed=4)
    series = pl.read_parquet(tmp_path / "syn" / "train_series.parquet")
    first, second = series.partition_by("series_id", maintain_order=True)
    folder = tmp_path / "in"
    folder.mkdir()
    first.write_parquet(folder / "good.parquet")
    second.write_parquet(folder / "dup1.parquet")
    second.write_parquet(folder / "dup2.parquet")  # the same series in two files
    (folder / "broken.gt3x").write_bytes(b"PK\x03\x04 not really")
    (folder / "empty.csv").write_text("")
    (folder / "torn.parquet").write_bytes(b"PAR1 cut short")
    code = main(["predict", str(folder), "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert code == 1
    assert "5 of 6 files failed" in printed
    assert "torn.parquet: not a readable parquet file" in printed
    assert "broken.gt3x: not a readable .gt3x file" in printed
    assert "empty.csv: not a readable CSV" in printed
    assert f"series '{second['series_id'][0]}' is in both" in printed
    good = pl.read_csv(tmp_path / "out" / "summary.csv")
    assert good["series_id"].unique().to_list() == [first["series_id"][0]]


def test_diary_differences_summary_and_unmatched_rows(predicted, recording, tmp_path):
    path, _ = recording
    out, _, table = predicted
    main_rows = table.filter((pl.col("period") == "main") & pl.col("onset_time").is_not_null())
    lines = ["recording,date,onset,wakeup"]
    shifts = []
    for i, row in enumerate(main_rows.head(2).iter_rows(named=True)):
        onset = pl.Series([row["onset_time"]]).str.to_datetime()[0]
        wakeup = pl.Series([row["wakeup_time"]]).str.to_datetime()[0]
        d = 10 * (i + 1)  # the diary says 10 (then 20) min later onset, 5 min earlier wakeup
        shifts.append(d)
        on, wk = onset + timedelta(minutes=d), wakeup - timedelta(minutes=5)
        lines.append(f"wrist01,{row['night']},{on:%H:%M:%S},{wk:%H:%M:%S}")
    lines += [
        "wrist01,2018-09-19,23:00,07:00",  # the not-worn night: no period detected
        "wrist02,2018-09-18,23:00,07:00",  # no such recording
        "wrist01,2019-01-01,23:00,07:00",  # no such night
        "wrist01,2018-09-20,late,07:00",  # does not parse
    ]
    diary = tmp_path / "diary.csv"
    diary.write_text("\n".join(lines) + "\n")
    shutil.copytree(out, tmp_path / "out")
    code = main(["predict", str(path), "--out", str(tmp_path / "out"), "--timezone", TIME_ZONE,
                 "--diary", str(diary)])  # fmt: skip
    assert code == 0
    nights = pl.read_csv(tmp_path / "out" / "diary.csv")
    assert nights["onset_diff_min"].to_list() == pytest.approx([-s for s in shifts], abs=1 / 60)
    assert nights["wakeup_diff_min"].to_list() == pytest.approx([5.0, 5.0], abs=1 / 60)
    summary = pl.read_csv(tmp_path / "out" / "diary-summary.csv")
    onset = summary.filter(pl.col("event") == "onset").row(0, named=True)
    assert onset["nights"] == 2 and onset["mean_diff_min"] == pytest.approx(-15, abs=0.1)
    assert onset["mean_abs_diff_min"] == pytest.approx(15, abs=0.1)
    unmatched = (tmp_path / "out" / "diary-unmatched.txt").read_text()
    assert "wrist01, 2018-09-19: no sleep period was detected that night" in unmatched
    assert "wrist02, 2018-09-18: no recording of that name was reported" in unmatched
    assert "wrist01, 2019-01-01: the recording has no such night" in unmatched
    assert "line 7 (wrist01, 2018-09-20): 'late' is not a time" in unmatched
    assert (tmp_path / "out" / "bland-altman.png").stat().st_size > 10_000


def test_bad_diary_files(tmp_path):
    with pytest.raises(InputError, match="no such diary file"):
        read_diary(tmp_path / "none.csv")
    (tmp_path / "d.csv").write_text("recording,date,onset\nr,2024-01-01,22:00\n")
    with pytest.raises(InputError, match="column 'wakeup' is missing"):
        read_diary(tmp_path / "d.csv")


# ---------------------------------------------------------------- the page in a browser


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    _chromium() is None, reason="headless Chromium absent: apt-get install chromium"
)
def test_the_html_report_shows_its_table_and_picture_in_chromium(predicted, tmp_path):
    out, _, table = predicted
    page = out / "wrist01" / "report.html"
    text = page.read_text()
    assert "http" not in text.replace("http-equiv", "")  # nothing to fetch: self-contained
    # the same page plus a probe that writes what the browser rendered into the DOM
    probe = tmp_path / "probe.html"
    probe.write_text(
        text.replace(
            "</body>",
            "<script>window.onload = () => { const i = document.querySelector('img');"
            "document.body.insertAdjacentHTML('beforeend', `<p id=probe>rows=${"
            "document.querySelectorAll('tbody tr').length} img=${i.naturalWidth}x"
            "${i.naturalHeight}</p>`); };</script></body>",
        )
    )
    dom = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            "--virtual-time-budget=5000",
            probe.as_uri(),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
        check=True,  # fmt: skip
    ).stdout
    found = dom.split('id="probe">')[1].split("</p>")[0]
    rows, size = found.split()
    assert int(rows.removeprefix("rows=")) == len(table)
    width, height = (int(v) for v in size.removeprefix("img=").split("x"))
    assert width > 500 and height > 200  # the actogram decoded from the page itself
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            page.as_uri(),
        ],  # fmt: skip
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a page with text and a picture, not a blank one


def test_page_escapes_text_from_the_data(tmp_path):
    table = pl.DataFrame({"series_id": ["<b>x</b>"], "period": ["main"], "onset_time": [None]})
    html = (write_page(Page("t & <t>", {"k": "<v>"}, table), tmp_path / "p.html")).read_text()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "t &amp; &lt;t&gt;" in html and 'class="none"' in html


def test_convert_with_a_diary_writes_a_training_folder(tmp_path, capsys):
    truth = write_raw(tmp_path / "raw" / "wrist01.csv", days=4.0, hz=10.0, seed=0)
    plan = truth.plan
    labelled = [k for k in range(len(plan.onset)) if plan.labelled[k]][:2]
    times = timestamps(plan, np.r_[plan.onset[labelled], plan.wakeup[labelled]]).to_list()
    lines = ["recording,date,onset,wakeup"]
    for i in range(len(labelled)):
        onset, wakeup = times[i], times[i + len(labelled)]
        night = (datetime.fromisoformat(onset[:19]) - timedelta(hours=12)).date()
        lines.append(f"wrist01,{night},{onset[11:16]},{wakeup[11:16]}")
    lines.append("nobody,2018-09-18,22:00,07:00")
    (tmp_path / "diary.csv").write_text("\n".join(lines) + "\n")
    code = main(["convert", str(tmp_path / "raw"), "--out", str(tmp_path / "mine"),
                 "--timezone", TIME_ZONE, "--labels", str(tmp_path / "diary.csv")])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    events = read_events(tmp_path / "mine" / "train_events.csv")  # the competition's reader
    assert events["step"].to_list() == [
        s for k in labelled for s in (plan.onset[k], plan.wakeup[k])
    ]
    series = read_series(tmp_path / "mine" / "train_series.parquet")
    assert len(series) == plan.n_steps
    assert "nobody, 2018-09-18: no recording of that name" in printed
    assert printed.count("taken as a night without sleep") == len(plan.onset) - len(labelled)
