"""03_infer: whole-series prediction, bundles, ensembles, and a valid submission."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from torch import nn

from sleepdetect.config import load_config, save_config
from sleepdetect.inference.bundles import load_bundle
from sleepdetect.inference.ensemble import ensemble_scores
from sleepdetect.inference.predict import predict_series, window_starts
from sleepdetect.models import build_model
from sleepdetect.stages.infer import infer

REPO = Path(__file__).resolve().parents[1]
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
        "import sys, sleepdetect.stages.infer, sleepdetect.inference.bundles,"
        " sleepdetect.inference.ensemble, sleepdetect.events.postprocess,"
        " sleepdetect.events.metric;"
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


# ---------------------------------------------------------------- corrupt or mismatched bundles


def truncate(bundle):
    data = (bundle / "model.pt").read_bytes()
    (bundle / "model.pt").write_bytes(data[: len(data) // 2])


def overwrite_config(bundle, *overrides):
    save_config(load_config(None, [*BUNDLE, *overrides]), bundle / "config.yaml")


@pytest.mark.parametrize(
    "spoil, message",
    [
        (truncate, r"model\.pt: not readable as torch weights .* truncated"),
        (
            lambda b: (b / "model.pt").write_text("not a torch file"),
            r"model\.pt: not readable as torch weights",
        ),
        (lambda b: (b / "model.pt").write_bytes(b""), r"model\.pt: not readable as torch"),
        (
            lambda b: torch.save(torch.zeros(3), b / "model.pt"),
            r"model\.pt: holds a Tensor, not the state_dict",
        ),
        (
            lambda b: torch.save({"encoder.weight": torch.zeros(3)}, b / "model.pt"),
            r"model\.pt is not the model .*config\.yaml describes .* weights missing .* "
            r"1 unexpected \(e\.g\. encoder\.weight\)",
        ),
        (
            lambda b: overwrite_config(b, "model.params={hidden_size: 16, num_layers: 1}"),
            r"model\.pt is not the model .*'hidden_size': 16.* of another shape \(e\.g\. .*"
            r" in model\.pt, .* by config\.yaml\)",
        ),
        (
            lambda b: overwrite_config(
                b, "model.name=Spec2DCNN", "model.encoder_name=resnet18", "model.params={}"
            ),
            r"model\.pt is not the model .*model\.name=Spec2DCNN.* weights missing",
        ),
        (
            lambda b: overwrite_config(b, "model.name=Spec2DCNN"),
            r"config\.yaml: model\.params: Spec2DCNN has no argument 'hidden_size'",
        ),
        (
            lambda b: overwrite_config(b, "prepare.features=[anglez, enmo]"),
            r"model\.pt is not the model .* 2 features\): .* of another shape",
        ),
        (
            lambda b: (b / "config.yaml").write_text("model: {name: DayGRU\n  params: ["),
            r"config\.yaml: not a bundle config \(.*not valid YAML",
        ),
        (
            lambda b: (b / "config.yaml").write_text("- a list\n- not a config\n"),
            r"config\.yaml: not a bundle config \(.*must hold a mapping",
        ),
        (
            lambda b: (b / "config.yaml").write_text("model: {name: NoSuchModel}\n"),
            r"config\.yaml: .*NoSuchModel",
        ),
    ],
    ids=[
        "truncated",
        "not-torch",
        "empty",
        "a-tensor",
        "foreign-keys",
        "other-hidden-size",
        "other-architecture",
        "other-architecture-params",
        "other-features",
        "config-not-yaml",
        "config-not-mapping",
        "config-unknown-model",
    ],
)
def test_corrupt_or_mismatched_bundles_name_the_file_and_the_fix(tmp_path, spoil, message):
    from sleepdetect.core.errors import InputError

    bundle = make_bundle(tmp_path / "fold0", 0)
    spoil(bundle)
    with pytest.raises(InputError, match=message) as e:
        load_bundle(bundle)
    msg = str(e.value)
    assert str(bundle) in msg
    assert "retrain the bundle" in msg or "the one it was trained with" in msg


def test_diverged_weights_are_refused(tmp_path):
    from sleepdetect.core.errors import InputError

    bundle = make_bundle(tmp_path / "fold0", 0)
    state = torch.load(bundle / "model.pt", weights_only=True)
    next(iter(state.values())).fill_(float("nan"))
    torch.save(state, bundle / "model.pt")
    with pytest.raises(InputError, match=r"weights are not finite .* retrain the bundle"):
        load_bundle(bundle)


def test_package_refuses_a_corrupt_bundle_before_building(tmp_path, monkeypatch):
    from sleepdetect.core.errors import InputError
    from sleepdetect.kaggle import package

    monkeypatch.chdir(REPO)
    truncate(make_bundle(tmp_path / "outputs" / "x" / "fold1", 0))
    cfg = load_config(
        REPO / "params" / "kaggle.yaml",
        [f"output.dir={tmp_path / 'outputs'}", "kaggle.username=me", "kaggle.wheels=[]"],
    )
    with pytest.raises(InputError, match=r"fold1/model\.pt: not readable as torch weights"):
        package(cfg, ["x"], out=tmp_path / "kd")
    assert not (tmp_path / "kd" / "sleepdetect-code").exists()  # nothing built to upload


# ---------------------------------------------------------------- Kaggle: nested folders, archives


@pytest.fixture
def kaggle_input(monkeypatch, tmp_path):
    """A Kaggle input folder of our own, no input overridden by this machine's environment."""
    import os

    for name in [k for k in os.environ if k.startswith("SLEEPDETECT_INPUT_")]:
        monkeypatch.delenv(name)
    root = tmp_path / "kaggle" / "input"
    root.mkdir(parents=True)
    monkeypatch.setenv("SLEEPDETECT_KAGGLE_INPUT", str(root))
    monkeypatch.chdir(tmp_path)  # no checkout here
    return root


@pytest.mark.parametrize("deeper", ["sleepdetect-weights", "a/b"])
def test_a_weights_dataset_unpacked_deeper_is_found_with_a_note(kaggle_input, deeper, capsys):
    nested = kaggle_input / "sleepdetect-weights" / deeper / "exp" / "fold0"
    make_bundle(nested, 0)
    cfg = load_config(None, ["infer.bundles=[input:sleepdetect-weights/exp/fold0]"])
    assert cfg.infer.bundles == [str(nested)]
    assert "unpacked a folder deeper" in capsys.readouterr().out
    assert load_bundle(cfg.infer.bundles[0]).path == nested


def test_a_bundle_named_one_or_two_folders_too_high_is_found_with_a_note(tmp_path, capsys):
    make_bundle(tmp_path / "fold0" / "fold0", 0)  # an archive unpacked into its own name
    assert load_bundle(tmp_path / "fold0").path == tmp_path / "fold0" / "fold0"
    assert "note: bundle" in capsys.readouterr().out
    make_bundle(tmp_path / "w" / "w" / "exp" / "fold0", 0)  # the same, a folder higher up
    assert load_bundle(tmp_path / "w" / "exp" / "fold0").path == (
        tmp_path / "w" / "w" / "exp" / "fold0"
    )


def test_the_code_datasets_params_are_found_a_folder_deeper(kaggle_input, capsys):
    from sleepdetect.core.paths import resolve_path

    code = kaggle_input / "sleepdetect-code" / "sleepdetect-code"
    code.mkdir(parents=True)
    (code / "infer.yaml").write_text("infer: {phase: test}\n")
    assert resolve_path("input:sleepdetect-code/infer.yaml") == str(code / "infer.yaml")
    assert load_config("input:sleepdetect-code/infer.yaml").infer.phase == "test"


@pytest.mark.parametrize("archive", ["exp.tar", "sleepdetect-weights.tar", "exp.zip"])
def test_an_archive_where_the_bundle_folders_should_be_is_named(kaggle_input, tmp_path, archive):
    import tarfile

    from sleepdetect.core.errors import InputError

    make_bundle(tmp_path / "built" / "exp" / "fold0", 0)
    weights = kaggle_input / "sleepdetect-weights"
    weights.mkdir()
    with tarfile.open(weights / archive, "w") as tar:  # the suffix is what is checked
        tar.add(tmp_path / "built" / "exp", arcname="exp")
    cfg = load_config(None, ["infer.bundles=[input:sleepdetect-weights/exp/fold0]"])
    with pytest.raises(InputError) as e:
        load_bundle(cfg.infer.bundles[0])
    msg = str(e.value)
    assert f"{weights / archive} is an archive where its folders should be" in msg
    assert "-r zip" in msg and f"tar -xf {weights / archive}" in msg


def test_a_folder_of_bundles_is_not_a_bundle(tmp_path):
    from sleepdetect.core.errors import InputError

    make_bundle(tmp_path / "exp" / "fold0", 0)
    make_bundle(tmp_path / "exp" / "fold1", 1)
    with pytest.raises(InputError, match=r"not a bundle but a folder of 2 .*fold0.*fold1"):
        load_bundle(tmp_path / "exp")
    with pytest.raises(InputError, match="no such folder"):
        load_bundle(tmp_path / "exp" / "fold9")


def test_an_ensemble_folder_stands_for_its_members_wherever_bundles_are_named(tmp_path):
    from sleepdetect.config import ConfigError
    from sleepdetect.experiment import model_sha256

    ens = tmp_path / "ens"
    a, b = make_bundle(ens / "a", 0), make_bundle(ens / "b", 1)
    (ens / "ensemble.yaml").write_text("members: [b, a]\n")
    cfg = load_config(None, [f"infer.bundles=[{ens}]", f"ensemble.outside=[{a}, {ens}]"])
    assert cfg.infer.bundles == [str(b), str(a)]
    assert cfg.ensemble.outside == [str(a), str(b), str(a)]
    before = model_sha256(ens)
    assert before not in (model_sha256(a), model_sha256(b))
    torch.save({k: v + 1 for k, v in torch.load(a / "model.pt").items()}, a / "model.pt")
    assert model_sha256(ens) != before  # a member retrained: the ensemble is another model
    with pytest.raises(ConfigError, match="an ensemble of 2 bundles; fine-tuning starts from one"):
        load_config(None, [f"model.init_from={ens}"])


@pytest.mark.parametrize(
    ("listing", "says"),
    [
        ("members: a\n", "members is 'a'"),
        ("members: []\n", "members is \\[\\]"),
        ("- a\n", "not an ensemble listing"),
        ("members: [a, c]\n", "member c has no model.pt"),
        ("members: [a\n", "not an ensemble listing"),
    ],
)
def test_a_bad_ensemble_listing_is_named_with_the_fix(tmp_path, listing, says):
    from sleepdetect.core.errors import InputError

    make_bundle(tmp_path / "ens" / "a", 0)
    (tmp_path / "ens" / "ensemble.yaml").write_text(listing)
    with pytest.raises(InputError, match=says) as e:
        load_config(None, [f"ensemble.outside=[{tmp_path / 'ens'}]"])
    assert str(tmp_path / "ens" / "ensemble.yaml") in str(e.value)
    assert "members:" in str(e.value)


def test_bundles_of_different_features_are_not_ensembled(tmp_path):
    from sleepdetect.core.errors import InputError

    a = make_bundle(tmp_path / "a", 0)
    b = tmp_path / "b"
    b.mkdir()
    cfg_b = load_config(None, [*BUNDLE, "prepare.features=[anglez, enmo]"])
    torch.save(build_model(cfg_b.model, in_channels=2).state_dict(), b / "model.pt")
    save_config(cfg_b, b / "config.yaml")
    cfg = load_config(None, [*BUNDLE, f"infer.bundles=[{a}, {b}]", f"output.dir={tmp_path}"])
    with pytest.raises(InputError, match="trained on different features; ensemble bundles of one"):
        infer(cfg)
