"""01_prepare: arrays, manifest and events from real and synthetic files."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from sleepdetect.cli import main as cli_main
from sleepdetect.config import load_config
from sleepdetect.data.features import FULL_FEATURES, REFERENCE_FEATURES
from sleepdetect.data.io import read_series
from sleepdetect.data.prepare import Manifest, prepare


def run_prepare(data_dir, out_dir, *overrides):
    cfg = load_config(None, [f"data.dir={data_dir}", f"output.dir={out_dir}", *overrides])
    return prepare(cfg)


def test_real_sample(real_data_dir, tmp_path):
    m = run_prepare(real_data_dir, tmp_path, "exp_name=real")
    assert [s.series_id for s in m.series] == ["038441c925bb"]
    assert m.series[0].n_steps == 204840
    assert m.series[0].first_timestamp == "2018-08-14T15:30:00-0400"
    x = m.features("038441c925bb")
    assert isinstance(x, np.memmap) and x.shape == (204840, 4) and x.dtype == np.float32
    raw = read_series(real_data_dir / "train_series.parquet")
    anglez = (raw["anglez"].to_numpy() - m.normalisation["anglez_mean"]) / m.normalisation[
        "anglez_std"
    ]
    np.testing.assert_allclose(x[:, 0], anglez, rtol=1e-5)  # row i is step i
    events = pl.read_csv(m.root / m.events)
    assert len(events) == 24 and events["step"].null_count() == 4
    assert (m.root / "config.yaml").is_file()


def test_real_sample_test_phase(real_data_dir, tmp_path):
    m = run_prepare(
        real_data_dir,
        tmp_path,
        "prepare.phase=test",
        f"prepare.features=[{','.join(FULL_FEATURES)}]",
    )
    assert m.phase == "test" and m.events is None
    assert [s.n_steps for s in m.series] == [150, 150, 150]
    assert m.features(m.series[0].series_id).shape == (150, len(FULL_FEATURES))


def test_synthetic_manifest_matches_arrays(synthetic_dir, tmp_path):
    m = run_prepare(synthetic_dir, tmp_path, f"prepare.features=[{','.join(FULL_FEATURES)}]")
    assert m.feature_names == FULL_FEATURES
    raw = json.loads((m.root / "manifest.json").read_text())
    assert raw["normalisation"] and raw["step_seconds"] == 5
    for entry in m.series:
        x = m.features(entry.series_id)
        assert x.shape == (entry.n_steps, len(FULL_FEATURES))
        assert np.isfinite(x).all()
    events = pl.read_csv(m.root / m.events)
    assert set(events["series_id"]) <= set(m.lengths)


def test_empty_data_dir_gets_synthetic_data(tmp_path):
    data = tmp_path / "data"
    m = run_prepare(data, tmp_path / "out", "data.synthetic.series=2", "data.synthetic.days=1.5")
    assert len(m.series) == 2
    assert (data / "train_series.parquet").is_file() and (data / "train_events.csv").is_file()


def test_failed_run_keeps_the_previous_result(real_data_dir, tmp_path):
    first = run_prepare(real_data_dir, tmp_path, "exp_name=x")
    before = first.features("038441c925bb").copy()
    with pytest.raises(Exception, match="unknown feature"):
        run_prepare(real_data_dir, tmp_path, "exp_name=x", "prepare.features=[nope]")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train_series.parquet").write_text("not parquet")
    (bad / "train_events.csv").write_text("series_id,night,event,step,timestamp\n")
    with pytest.raises(Exception, match="not a parquet file"):
        run_prepare(bad, tmp_path, "exp_name=x")
    again = Manifest.load(first.root)
    np.testing.assert_array_equal(again.features("038441c925bb"), before)
    assert sorted(p.name for p in first.root.parent.iterdir()) == ["train"]  # no leftovers


def test_missing_series_file_names_what_is_there(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "something.txt").write_text("x")
    with pytest.raises(
        Exception, match=r"train_series.parquet: not found \(the folder holds something.txt\)"
    ):
        run_prepare(data, tmp_path)


def test_cli_prepare_prints_manifest_and_reports_bad_params(real_data_dir, tmp_path, capsys):
    code = cli_main(
        ["prepare", f"data.dir={real_data_dir}", f"output.dir={tmp_path}", "prepare.phase=test"]
    )
    assert code == 0
    assert capsys.readouterr().out.strip().endswith("manifest.json")
    assert cli_main(["prepare", "prepare.featurez=[x]"]) == 2
    assert "unknown key 'prepare.featurez'" in capsys.readouterr().err


def test_reference_features_are_the_default():
    assert load_config().prepare.features == REFERENCE_FEATURES
