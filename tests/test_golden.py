"""Golden output of a bundle: a tiny DayGRU with fixed weights, saved and loaded as 02_train and
03_infer do, must score a fixed series exactly as when the golden file was written.

The weights come from numpy's seeded generator (not torch's initialisers), the series is
closed-form, so the golden file moves only when the model, the features, whole-series
inference (window cutting, padding, averaging) or peak finding change what they compute.

When such a change is intended, regenerate the golden file and commit it with the change:

    SLEEPDETECT_REGEN_GOLDEN=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q tests/test_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from sleepdetect.config import load_config, save_config
from sleepdetect.core.constants import EVENTS
from sleepdetect.core.files import save_npy
from sleepdetect.data.features import NORMALISATION, SeriesSignals, build_features
from sleepdetect.data.prepare import Manifest, SeriesEntry
from sleepdetect.events.candidates import predict_candidates
from sleepdetect.inference.bundles import load_bundle
from sleepdetect.inference.ensemble import ensemble_scores
from sleepdetect.models import build_model

GOLDEN = Path(__file__).parent / "golden" / "day_gru_bundle.npz"
REGEN_ENV = "SLEEPDETECT_REGEN_GOLDEN"
REGEN_COMMAND = (
    f"{REGEN_ENV}=1 OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q tests/test_golden.py"
)
ATOL = 1e-5
SUBSAMPLE = 10  # every 10th step's scores are stored (plus sums over all steps)

FEATURES = ["anglez", "enmo", "hour_sin", "anglez_diff"]
BUNDLE = [
    "exp_name=golden",
    "model.name=DayGRU",
    "model.downsample_rate=12",
    "model.params={hidden_size: 8, num_layers: 2, dropout: 0.0}",
    "windows.length=1440",
    "windows.valid_stride=720",
    f"prepare.features=[{', '.join(FEATURES)}]",
    # the reference peak finding, plus the demo's extra candidates and the minute grid
    "postprocess.method=peaks",
    "postprocess.score_th=0.005",
    "postprocess.distance=40",
    "postprocess.peak_offsets=[-36, 36]",
    "postprocess.minute_snap=true",
]
# (series_id, steps, first timestamp): several overlapping windows with a flush last one, and
# a series shorter than one window (padded, then cropped back)
SERIES = [("long", 2500, "2018-08-14T21:00:00-0400"), ("short", 700, "2018-08-15T03:30:00-0400")]


def fixed_weights(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state_dict of numpy-seeded values, key by key in sorted order: the same on every
    machine and torch version (torch's own initialisers are not promised to be)."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in sorted(model.state_dict().items()):
        if value.ndim >= 2:  # weight matrices: fan-in scaled, so activations stay moderate
            array = rng.uniform(-1.0, 1.0, tuple(value.shape)) / np.sqrt(value.shape[-1])
        else:
            array = rng.uniform(-0.5, 0.5, tuple(value.shape))
        state[key] = torch.from_numpy(array.astype(np.float32))
    return state


def signals(n_steps: int, first_timestamp: str) -> SeriesSignals:
    """Closed-form wrist signals: movement by day, a still stretch in the middle."""
    t = np.arange(n_steps, dtype=np.float64)
    hh, mm = int(first_timestamp[11:13]), int(first_timestamp[14:16])
    still = (t > 0.3 * n_steps) & (t < 0.6 * n_steps)
    anglez = np.where(
        still, -20.0 + 2.0 * np.sin(t / 300.0), 45 * np.sin(t / 37) + 30 * np.sin(t / 211)
    )
    enmo = np.where(still, 0.0, 0.05 * (1.0 + np.sin(t / 53.0)) ** 2)
    return SeriesSignals(
        anglez=anglez.astype(np.float32),
        enmo=enmo.astype(np.float32),
        seconds_of_day=((hh * 3600 + mm * 60 + 5 * t) % 86400).astype(np.int32),
    )


def write_bundle(path: Path) -> Path:
    """The fold folder 02_train leaves: model.pt (a plain state_dict, as export_bundle saves
    it) beside config.yaml (the resolved config, as train saves it)."""
    cfg = load_config(None, BUNDLE)
    model = build_model(cfg.model, in_channels=len(FEATURES))
    model.load_state_dict(fixed_weights(model))
    path.mkdir(parents=True)
    torch.save(model.state_dict(), path / "model.pt")
    save_config(cfg, path / "config.yaml")
    return path


def write_prepared(root: Path) -> Manifest:
    """A prepared folder as 01_prepare writes it: one (steps, features) float32 array a series."""
    entries = []
    for sid, n_steps, first in SERIES:
        file = f"features/{sid}.npy"
        save_npy(root / file, build_features(signals(n_steps, first), FEATURES))
        entries.append(SeriesEntry(sid, n_steps, first, file))
    return Manifest(
        root=root,
        phase="test",
        sources={"series": {"path": "tests/test_golden.py"}},
        feature_names=list(FEATURES),
        normalisation=dict(NORMALISATION),
        step_seconds=5,
        series=entries,
        events=None,
        prepare_config={},
    )


def bundle_outputs(tmp_path: Path) -> dict[str, np.ndarray]:
    """What the golden file holds, computed through the real inference path."""
    bundle = load_bundle(write_bundle(tmp_path / "fold0"))
    manifest = write_prepared(tmp_path / "prepared")
    out: dict[str, np.ndarray] = {}
    for sid, n_steps, _ in SERIES:
        scores = ensemble_scores(
            [bundle], [1.0], manifest.features(sid), stride=None, batch_size=2, device="cpu"
        )
        assert scores.shape == (n_steps, 2) and scores.dtype == np.float32
        cand = predict_candidates(manifest, sid, scores, bundle.config.postprocess).sort(
            "event", "step"
        )
        out[f"{sid}.scores_every_{SUBSAMPLE}"] = scores[::SUBSAMPLE]
        out[f"{sid}.score_sums"] = scores.astype(np.float64).sum(axis=0)
        out[f"{sid}.score_square_sums"] = np.square(scores.astype(np.float64)).sum(axis=0)
        out[f"{sid}.candidate_step"] = cand["step"].to_numpy().astype(np.int32)
        out[f"{sid}.candidate_event"] = (
            cand["event"].replace_strict(
                list(EVENTS), list(range(len(EVENTS))), return_dtype=pl.Int8
            )
        ).to_numpy()
        out[f"{sid}.candidate_score"] = cand["score"].to_numpy().astype(np.float32)
    return out


def test_bundle_scores_and_candidates_match_the_golden_file(tmp_path):
    got = bundle_outputs(tmp_path)
    if os.environ.get(REGEN_ENV) == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(GOLDEN, **got)
        pytest.skip(f"{REGEN_ENV}=1: wrote {GOLDEN}; commit it with the change that moved it")
    how = (
        f"If the change is intended (model, features, inference or post-processing), "
        f"regenerate the golden file with `{REGEN_COMMAND}` and commit it."
    )
    assert GOLDEN.is_file(), f"{GOLDEN} is missing. {how}"
    assert GOLDEN.stat().st_size < 10_000, f"{GOLDEN} should stay a few KB"
    with np.load(GOLDEN) as f:
        golden = {k: f[k] for k in f.files}
    assert sorted(got) == sorted(golden), f"the golden file holds other arrays. {how}"
    for key, expected in golden.items():
        actual = got[key]
        assert actual.shape == expected.shape, (
            f"{key}: shape {actual.shape}, golden {expected.shape}. {how}"
        )
        if key.endswith(("candidate_step", "candidate_event")):
            assert np.array_equal(actual, expected), f"{key} differs from the golden file. {how}"
        else:
            atol = ATOL
            if key.endswith("sums"):  # sums over every step: the per-step tolerance, summed
                atol = ATOL * {sid: n for sid, n, _ in SERIES}[key.split(".")[0]]
            diff = float(np.max(np.abs(actual - expected), initial=0.0))
            assert np.allclose(actual, expected, rtol=0, atol=atol), (
                f"{key} drifted from the golden file by up to {diff:.3g} (atol {atol:g}). {how}"
            )


def test_golden_inputs_exercise_several_windows_and_padding():
    """The golden series must keep covering what it is there to cover."""
    from sleepdetect.inference.predict import window_starts

    cfg = load_config(None, BUNDLE)
    long_starts = window_starts(SERIES[0][1], cfg.windows.length, cfg.windows.valid_stride)
    assert len(long_starts) >= 3 and long_starts[-1] + cfg.windows.length == SERIES[0][1]
    assert SERIES[1][1] < cfg.windows.length  # padded, then cropped back
