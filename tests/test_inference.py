"""03_infer: whole-series prediction, bundles, ensembles, and a valid submission."""

from __future__ import annotations

import socket

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from sleepdetect.config import load_config, save_config
from sleepdetect.inference import (
    ensemble_scores,
    infer,
    load_bundle,
    predict_series,
    window_starts,
)
from sleepdetect.models import build_model

FEATURES = ["anglez", "enmo", "hour_sin", "hour_cos"]
BUNDLE = [
    "model.name=DayGRU",
    "model.downsample_rate=12",
    "model.params={hidden_size: 8, num_layers: 1}",
    "windows.length=1440",
    "windows.valid_stride=720",
    f"prepare.features=[{','.join(FEATURES)}]",
]


class Constant(nn.Module):
    """Scores every step alike: any seam between windows would show."""

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], x.shape[2], 2), 0.25)  # (batch, steps, 2)


class StepIndex(nn.Module):
    """Scores each step by its first feature, so we can see which window scored it."""

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1, :].transpose(1, 2).repeat(1, 1, 2)  # (batch, steps, 2)


def make_bundle(path, seed: int, *overrides):
    cfg = load_config(None, [*BUNDLE, *overrides])
    torch.manual_seed(seed)
    model = build_model(cfg.model, in_channels=len(FEATURES))
    path.mkdir(parents=True)
    torch.save(model.state_dict(), path / "model.pt")
    save_config(cfg, path / "config.yaml")
    return path


@pytest.mark.parametrize("n_steps", [1, 150, 1439, 1440, 1441, 5000])
@pytest.mark.parametrize("stride", [360, 720, 1440])
def test_constant_model_gives_constant_scores(n_steps, stride):
    scores = predict_series(Constant(), np.zeros((n_steps, 3), np.float32), 1440, stride)
    assert scores.shape == (n_steps, 2)
    np.testing.assert_allclose(scores, 0.25)


def test_each_step_is_scored_by_the_windows_that_see_it():
    x = np.arange(5000, dtype=np.float32)[:, None]
    scores = predict_series(StepIndex(), x, 1440, 360)
    np.testing.assert_allclose(scores[:, 0], x[:, 0])  # no step lost, no step shifted


def test_window_starts_cover_the_series():
    starts = window_starts(5000, 1440, 720)
    assert starts[0] == 0 and starts[-1] == 5000 - 1440
    assert (np.diff(starts) <= 720).all()
    assert window_starts(100, 1440, 720).tolist() == [0]
    with pytest.raises(ValueError, match="stride"):
        window_starts(5000, 1440, 2000)


def test_ensemble_of_two_bundles_is_the_mean_of_each(tmp_path):
    a = load_bundle(make_bundle(tmp_path / "a", 0))
    b = load_bundle(make_bundle(tmp_path / "b", 1))
    x = np.random.default_rng(0).standard_normal((3000, len(FEATURES))).astype(np.float32)
    sa = ensemble_scores([a], [1.0], x, None, 4, "cpu")
    sb = ensemble_scores([b], [1.0], x, None, 4, "cpu")
    assert not np.allclose(sa, sb)
    np.testing.assert_allclose(
        ensemble_scores([a, b], [1.0, 1.0], x, None, 4, "cpu"), (sa + sb) / 2, atol=1e-6
    )
    np.testing.assert_allclose(
        ensemble_scores([a, b], [3.0, 1.0], x, None, 4, "cpu"), 0.75 * sa + 0.25 * sb, atol=1e-6
    )


def test_stride_changes_no_output_shape(tmp_path):
    a = load_bundle(make_bundle(tmp_path / "a", 0))
    x = np.random.default_rng(0).standard_normal((4000, len(FEATURES))).astype(np.float32)
    shapes = {ensemble_scores([a], [1.0], x, s, 4, "cpu").shape for s in (180, 720, 1440)}
    assert shapes == {(4000, 2)}


def test_missing_bundle_files_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no model.pt"):
        load_bundle(tmp_path / "empty")


def test_official_test_sample_gives_a_valid_submission_offline(
    real_data_dir, tmp_path, monkeypatch
):
    make_bundle(tmp_path / "out" / "real" / "fold0", 0)

    def no_network(*args, **kwargs):
        raise OSError("network blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    cfg = load_config(
        None,
        [
            *BUNDLE,
            f"data.dir={real_data_dir}",
            f"output.dir={tmp_path / 'out'}",
            "exp_name=real",
            "postprocess.score_th=0.0",
        ],
    )
    path = infer(cfg)
    sub = pl.read_csv(path)
    assert not (tmp_path / "copy.csv").exists()
    # infer.copy_to: where Kaggle expects it too, the same bytes
    cfg.infer.copy_to = str(tmp_path / "copy.csv")
    assert infer(cfg).read_bytes() == (tmp_path / "copy.csv").read_bytes()
    assert sub.columns == ["row_id", "series_id", "step", "event", "score"]
    assert sub["row_id"].to_list() == list(range(len(sub)))
    assert set(sub["series_id"]) <= {"038441c925bb", "03d92c9f6f8a", "0402a003dae9"}
    assert sub["step"].is_between(0, 149).all() and len(sub) > 0
    assert set(sub["event"]) <= {"onset", "wakeup"}


def test_inference_imports_no_lightning():
    import subprocess
    import sys

    code = (
        "import sys, sleepdetect.inference, sleepdetect.postprocess, sleepdetect.metric;"
        "bad = [m for m in ('lightning', 'papermill', 'kaggle') if m in sys.modules];"
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_single_step_and_flat_non_wear_series_give_finite_scores(tmp_path):
    bundle = load_bundle(make_bundle(tmp_path / "a", 0))
    flat = np.zeros((20000, len(FEATURES)), np.float32)  # not worn: every feature constant
    flat[:5000] = np.random.default_rng(0).standard_normal((5000, len(FEATURES)))
    for x in (flat, flat[:1]):
        scores = ensemble_scores([bundle], [1.0], x, None, 4, "cpu")
        assert scores.shape == (len(x), 2) and np.isfinite(scores).all()
