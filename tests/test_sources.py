"""Derived files tied to their sources: prepared folders, folds and submissions know what they
were made from, and whoever reads them checks it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from sleepdetect.config import load_config
from sleepdetect.core.errors import InputError
from sleepdetect.core.fingerprints import content_fingerprint, source_change, source_record
from sleepdetect.data.prepare import Manifest, open_prepared, prepare
from sleepdetect.data.synthetic import write_synthetic
from sleepdetect.stages.infer import infer
from test_inference import BUNDLE, make_bundle


def config(tmp_path, data_dir, *overrides):
    return load_config(
        None,
        [
            *BUNDLE,
            f"data.dir={data_dir}",
            f"output.dir={tmp_path / 'out'}",
            "exp_name=src",
            "postprocess.score_th=0.0",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    """Two synthetic data folders with different series."""
    root = tmp_path_factory.mktemp("sources")
    for name, seed in (("a", 1), ("b", 2)):
        write_synthetic(root / name, n_series=2, days=1.5, seed=seed)
    return root / "a", root / "b"


def test_content_fingerprint_follows_content_not_path_or_time(tmp_path):
    big = tmp_path / "big.bin"
    data = np.random.default_rng(0).bytes(5 << 20)  # sampled, not read whole
    big.write_bytes(data)
    record = source_record(big)
    moved = tmp_path / "moved.bin"
    shutil.copy(big, moved)
    assert source_change(record, moved) is None  # moved or touched: the same data
    changed = bytearray(data)
    changed[-10] ^= 1  # in the last MiB, where a parquet footer lives
    moved.write_bytes(bytes(changed))
    assert "is not the file the data came from" in source_change(record, moved)
    assert content_fingerprint(big) != content_fingerprint(moved)
    assert "does not exist" in source_change(record, tmp_path / "gone.bin")


def test_infer_predicts_the_data_dir_it_is_given(tmp_path, two_sources, capsys):
    """The issue's case: an experiment pointed at other data must not reuse the old arrays."""
    a, b = two_sources
    make_bundle(tmp_path / "out" / "src" / "fold0", 0)
    ids = {d: set(pl.read_parquet(d / "test_series.parquet")["series_id"]) for d in (a, b)}
    assert not ids[a] & ids[b]
    first = pl.read_csv(infer(config(tmp_path, a)))
    assert set(first["series_id"]) <= ids[a] and len(first)
    second_path = infer(config(tmp_path, b))
    assert "prepared again" in capsys.readouterr().out
    second = pl.read_csv(second_path)
    assert set(second["series_id"]) <= ids[b] and len(second)
    record = json.loads((second_path.parent / "submission.json").read_text())
    assert record["data"]["series"]["path"] == str((b / "test_series.parquet").resolve())
    assert [x["path"] for x in record["bundles"]] == [str(tmp_path / "out" / "src" / "fold0")]
    assert len(record["bundles"][0]["model_sha256"]) == 64


def test_a_file_replaced_under_the_same_path_is_noticed(tmp_path, two_sources):
    a, b = two_sources
    data = tmp_path / "data"
    shutil.copytree(a, data)
    cfg = config(tmp_path, data, "prepare.phase=train")
    prepare(cfg)
    assert open_prepared(cfg).phase == "train"
    shutil.copy(b / "train_series.parquet", data / "train_series.parquet")
    with pytest.raises(InputError, match="not prepared from data.dir=.*not the file the data"):
        open_prepared(cfg)
    shutil.copy(a / "train_series.parquet", data / "train_series.parquet")
    shutil.copy(b / "train_events.csv", data / "train_events.csv")  # the labels alone
    with pytest.raises(InputError, match="train_events.csv"):
        open_prepared(cfg)


def test_prepared_features_must_be_the_configs(tmp_path, two_sources):
    cfg = config(tmp_path, two_sources[0], "prepare.phase=train")
    prepare(cfg)
    other = config(tmp_path, two_sources[0], "prepare.phase=train", "prepare.features=[anglez]")
    with pytest.raises(InputError, match=r"it has features .* not \['anglez'\]; prepare again"):
        open_prepared(other)


@pytest.fixture()
def prepared(tmp_path, two_sources) -> Manifest:
    return prepare(config(tmp_path, two_sources[0], "prepare.phase=train"))


def test_missing_or_wrong_length_arrays_are_named(prepared):
    sid = prepared.series[0].series_id
    path = prepared.root / prepared.series[0].file
    np.save(path, np.zeros((5, len(prepared.feature_names)), np.float32))
    with pytest.raises(InputError, match=rf"{path}: holds an array of shape \(5, 4\).*damaged"):
        prepared.features(sid)
    path.write_bytes(b"\x93NUMPY truncated")
    with pytest.raises(InputError, match=f"{path}: cannot be read"):
        prepared.features(sid)
    path.unlink()
    with pytest.raises(InputError, match=f"{path}: cannot be read.*prepare again"):
        prepared.features(sid)


def test_truncated_or_older_manifest_is_named(prepared):
    path = prepared.root / "manifest.json"
    raw = json.loads(path.read_text())
    del raw["sources"]  # as an older version wrote it
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=f"{path}: not a manifest of this version"):
        Manifest.load(prepared.root)
    path.write_text(path.read_text()[:40])
    with pytest.raises(InputError, match="prepare again"):
        Manifest.load(prepared.root)


def test_fold_inputs_change_with_the_data(tmp_path, two_sources):
    from sleepdetect.training.fold import fold_inputs

    a, b = two_sources
    cfg_a = config(tmp_path, a, "prepare.phase=train", "exp_name=x")
    cfg_b = config(tmp_path, b, "prepare.phase=train", "exp_name=y")
    inputs_a, inputs_b = fold_inputs(cfg_a, prepare(cfg_a)), fold_inputs(cfg_b, prepare(cfg_b))
    assert inputs_a["data"].keys() == {"series", "events"} and inputs_a["init_from"] is None
    assert inputs_a["data"] != inputs_b["data"]


def test_stage_fingerprint_follows_the_files_it_reads(tmp_path, two_sources):
    from sleepdetect.core.records import change
    from sleepdetect.pipeline import stage_record

    a, b = two_sources
    data = tmp_path / "data"
    shutil.copytree(a, data)
    cfg = config(tmp_path, data)
    before = {s: stage_record(cfg, tmp_path, s) for s in ("prepare", "train", "infer")}
    shutil.copy(b / "test_series.parquet", data / "test_series.parquet")
    after = {s: stage_record(cfg, tmp_path, s) for s in ("prepare", "train", "infer")}
    # prepare and train read the train phase; infer reads the test file that changed
    assert before["prepare"] == after["prepare"] and before["train"] == after["train"]
    assert before["infer"] != after["infer"]
    assert change(before["infer"], after["infer"]) == "files.data series changed"
    bundle = make_bundle(tmp_path / "out" / "src" / "fold0", 0)
    with_bundle = stage_record(cfg, tmp_path, "infer")
    assert with_bundle != after["infer"]
    (bundle / "model.pt").write_bytes(b"retrained")
    assert stage_record(cfg, tmp_path, "infer") != with_bundle
