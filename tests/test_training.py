"""02_train: splits, window sampling, targets, the best-checkpoint rule, resume, determinism."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
import torch

from sleepdetect.config import ConfigError, load_config
from sleepdetect.data.prepare import Manifest, prepare
from sleepdetect.data.windows import SeriesLabels, WindowDataset, WindowSampler, split_segments
from sleepdetect.experiment import Experiment
from sleepdetect.training.fold import train

TINY = [
    "model.name=DayGRU",
    "model.downsample_rate=12",
    "model.params={hidden_size: 16, num_layers: 1, dropout: 0.0}",
    "windows.length=2880",
    "windows.per_epoch=32",
    "windows.valid_stride=1440",
    "trainer.batch_size=8",
    "trainer.max_epochs=2",
    "trainer.checkpoint_every_n_steps=2",
    "optimizer.lr=0.006",
    "split.n_folds=3",
    "prepare.features=[anglez, enmo, hour_sin, hour_cos, anglez_diff, enmo_std_60]",
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Six synthetic series (about 20 labelled nights) prepared once; tests copy the folder."""
    out = tmp_path_factory.mktemp("train")
    cfg = load_config(
        None,
        [
            f"data.dir={out / 'data'}",
            f"output.dir={out}",
            "data.synthetic.series=6",
            "data.synthetic.days=4",
            "data.synthetic.seed=2",
            *TINY,
        ],
    )
    prepare(cfg)
    return out


def tiny_cfg(prepared, tmp_path, *overrides):
    shutil.copytree(
        Experiment(prepared / "demo").prepared("train"),
        Experiment(tmp_path / "demo").prepared("train"),
    )
    data = f"data.dir={prepared / 'data'}"
    return load_config(None, [data, f"output.dir={tmp_path}", *TINY, *overrides])


def labels_of(manifest: Manifest) -> dict[str, SeriesLabels]:
    events = manifest.read_events()
    return {
        s.series_id: SeriesLabels.from_events(events.filter(pl.col("series_id") == s.series_id))
        for s in manifest.series
    }


def read_log(fold):
    return pl.concat([pl.read_csv(f) for f in sorted((fold / "log").glob("*/metrics.csv"))])


def test_series_folds_partition_the_series(prepared):
    m = Manifest.load(Experiment(prepared / "demo").prepared("train"))
    labels = labels_of(m)
    valid_all = []
    for fold in range(3):
        train, valid = split_segments(m, labels, "series", 3, fold, 0.3, seed=1)
        assert not {s.series_id for s in train} & {s.series_id for s in valid}
        assert all(s.start == 0 and s.end == m.lengths[s.series_id] for s in train + valid)
        valid_all += [s.series_id for s in valid]
    assert sorted(valid_all) == sorted(m.lengths)  # every series validates exactly once


def test_time_split_keeps_each_night_on_one_side(real_data_dir, tmp_path):
    cfg = load_config(None, [f"data.dir={real_data_dir}", f"output.dir={tmp_path}"])
    m = prepare(cfg)
    labels = labels_of(m)
    train, valid = split_segments(m, labels, "time", 5, 0, 0.3, seed=0)
    (t,), (v,) = train, valid
    assert t.end == v.start and t.start == 0 and v.end == 204840
    for onset, wakeup in labels["038441c925bb"].intervals:
        assert wakeup <= t.end or onset >= v.start  # no night straddles the cut
    n_valid_nights = sum(onset >= v.start for onset, _ in labels["038441c925bb"].intervals)
    assert 2 <= n_valid_nights <= 4  # the last ~30 % of 10 labelled nights


def test_sampler_statistics_and_determinism(prepared):
    m = Manifest.load(Experiment(prepared / "demo").prepared("train"))
    labels = labels_of(m)
    train, _ = split_segments(m, labels, "series", 2, 0, 0.3, seed=0)
    index = {s.series_id: i for i, s in enumerate(m.series)}
    ids = [s.series_id for s in m.series]
    sampler = WindowSampler(train, index, labels, 2880, 2000, 0.5, seed=3)
    draws = sampler.draw(0)
    assert draws.shape == (2000, 3)
    np.testing.assert_array_equal(draws, sampler.draw(0))  # (seed, epoch) fixes the draw
    assert not np.array_equal(draws, sampler.draw(1))
    allowed = {index[s.series_id] for s in train}
    assert set(draws[:, 0]) <= allowed
    with_event = 0
    for series, start, stop in draws:
        assert stop == min(start + 2880, m.lengths[ids[series]])
        n = m.lengths[ids[series]]
        assert 0 <= start and (start + 2880 <= n or start == 0)
        lab = labels[ids[series]]
        steps = np.concatenate([lab.onsets, lab.wakeups])
        with_event += bool(((steps >= start) & (steps < start + 2880)).any())
    # half the windows are placed on an event; background windows hit some by chance
    assert 0.5 <= with_event / len(draws) <= 0.9


def test_targets_line_up_with_events(prepared):
    m = Manifest.load(Experiment(prepared / "demo").prepared("train"))
    labels = labels_of(m)
    ids = [s.series_id for s in m.series]
    ds = WindowDataset(
        [m.features(s) for s in ids], [labels[s] for s in ids], 2880, "segmentation", 1, 10.0
    )
    series = next(i for i, s in enumerate(ids) if len(labels[s].onsets))
    onset = int(labels[ids[series]].onsets[0])
    start = max(0, onset - 1000)
    x, targets = ds[(series, start)]
    assert x.shape == (len(m.feature_names), 2880) and x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy().T, m.features(ids[series])[start : start + 2880])
    y = targets["labels"]  # (frames, [sleep, onset, wakeup])
    assert int(np.argmax(y[:, 1])) == onset - start
    assert y[onset - start + 5, 0] == 1.0  # asleep just after the onset


def test_targets_narrow_over_the_epochs(prepared):
    m = Manifest.load(Experiment(prepared / "demo").prepared("train"))
    labels = labels_of(m)
    ids = [s.series_id for s in m.series]
    args = ([m.features(s) for s in ids], [labels[s] for s in ids], 2880, "segmentation", 1)
    ds = WindowDataset(*args, 60.0, sigma_final=12.0, epochs=5)
    series = next(i for i, s in enumerate(ids) if len(labels[s].onsets))
    start = max(0, int(labels[ids[series]].onsets[0]) - 1000)

    def width(epoch):  # steps where the onset target is above half its peak
        onset = ds[(series, start, start + 2880, epoch)][1]["labels"][:, 1]
        return int((onset > onset.max() / 2).sum())

    assert [ds.sigma_at(e) for e in (0, 2, 4, 9)] == [60.0, 36.0, 12.0, 12.0]
    assert width(0) > width(2) > width(4)
    plain = WindowDataset(*args, 60.0)
    assert plain.sigma_at(4) == 60.0
    np.testing.assert_array_equal(
        plain[(series, start)][1]["labels"], ds[(series, start, start + 2880, 0)][1]["labels"]
    )


def test_fit_writes_bundle_and_keeps_best_epoch(prepared, tmp_path):
    cfg = tiny_cfg(prepared, tmp_path, "trainer.max_epochs=4")
    fold = train(cfg)
    for name in (
        "model.pt",
        "config.yaml",
        "metrics.csv",
        "oof.parquet",
        "curves.png",
        "nights.png",
    ):
        assert (fold / name).is_file(), name
    log = read_log(fold).drop_nulls("val_score")
    assert len(log) == 4
    metrics = pl.read_csv(fold / "metrics.csv")
    exported = metrics.filter(pl.col("event") == "score")["ap"][0]
    # the bundle holds the best epoch by validation score, not the last one
    assert exported == pytest.approx(log["val_score"].max(), abs=1e-6)
    assert set(metrics["event"]) == {"onset", "wakeup", "score"}
    oof = pl.read_parquet(fold / "oof.parquet")
    assert oof.columns == ["series_id", "step", "onset", "wakeup"]
    assert oof["onset"].is_between(0, 1).all()
    state = torch.load(fold / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


def test_two_runs_with_one_seed_are_identical(prepared, tmp_path):
    a = train(tiny_cfg(prepared, tmp_path / "a"))
    b = train(tiny_cfg(prepared, tmp_path / "b"))
    sa, sb = (torch.load(p / "model.pt", weights_only=True) for p in (a, b))
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0)


def test_saved_weights_depend_on_the_weights_only(tmp_path):
    """model.pt holds no trace of the temporary file it was written as (nor of the process),
    so two runs that reach the same weights write the same bytes."""
    import zipfile

    from sleepdetect.training.fold import save_weights

    state = {"w": torch.arange(6.0).reshape(2, 3)}
    a = save_weights(state, tmp_path / "a" / "model.pt")
    b = save_weights(state, tmp_path / "b" / "model.pt")
    assert a.read_bytes() == b.read_bytes()
    assert all(n.startswith("archive/") for n in zipfile.ZipFile(a).namelist())
    torch.testing.assert_close(torch.load(a, weights_only=True)["w"], state["w"])


class _Kill(Exception):
    pass


def test_killed_run_resumes_from_last_checkpoint(prepared, tmp_path):
    from lightning.pytorch import Callback

    class KillAt(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 5:  # mid-epoch 1 (4 steps an epoch)
                raise _Kill

    cfg = tiny_cfg(prepared, tmp_path)
    with pytest.raises(_Kill):
        train(cfg, callbacks=[KillAt()])
    last = Experiment(tmp_path / "demo").fold(0) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 4
    seen = []

    class Record(Callback):
        def on_train_start(self, trainer, *args):
            seen.append(trainer.global_step)

    train(cfg, callbacks=[Record()])
    assert seen == [4]  # resumed where the last checkpoint was, not from scratch


def test_tiny_fit_validation_score_rises(prepared, tmp_path):
    cfg = tiny_cfg(prepared, tmp_path, "trainer.max_epochs=6", "windows.per_epoch=64")
    fold = train(cfg)
    scores = read_log(fold).drop_nulls("val_score")["val_score"]
    assert scores.max() > scores[0] + 0.03


@pytest.mark.slow
def test_ddp_on_cpu_with_two_processes(prepared, tmp_path):
    """The same code under DDP: two gloo processes on the CPU, validation gathered across ranks."""
    cfg = tiny_cfg(
        prepared,
        tmp_path,
        "trainer.devices=2",
        "trainer.strategy=ddp_spawn",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=1",
    )
    fold = train(cfg)
    assert (fold / "model.pt").is_file()
    assert len(read_log(fold).drop_nulls("val_score")) == 1


def test_partners_pair_every_window_with_another():
    from sleepdetect.training.augment import partners

    for n in (2, 3, 8):
        for _ in range(5):
            partner = partners(n)
            assert sorted(partner.tolist()) == list(range(n))  # a permutation
            assert (partner != torch.arange(n)).all()  # nobody mixes with itself


def test_mixup_blends_inputs_and_labels_alike():
    from sleepdetect.training.augment import mixup

    np.random.seed(0)
    x = torch.stack([torch.zeros(2, 40), torch.ones(2, 40)])  # (batch, features, steps)
    labels = torch.stack([torch.zeros(10, 3), torch.ones(10, 3)])  # (batch, frames, 3)
    mixed_x, mixed_y = mixup(x, labels, torch.tensor([1, 0]), alpha=0.4)
    # each sample is lam * itself + (1 - lam) * its partner, its labels with the same lam
    lam = 1 - mixed_x[0, 0, 0]
    assert 0 < lam < 1  # a blend, not a copy
    torch.testing.assert_close(mixed_x[1], torch.full_like(x[1], float(lam)))
    torch.testing.assert_close(mixed_y[:, 0, 0], mixed_x[:, 0, 0])
    assert (mixed_x == mixed_x[:, :1, :1]).all()


def test_cutmix_pastes_inputs_and_labels_alike():
    from sleepdetect.training.augment import cutmix

    np.random.seed(0)
    stride = 4
    x = torch.stack([torch.zeros(2, 40), torch.ones(2, 40)])  # (batch, features, steps)
    labels = torch.stack([torch.zeros(10, 3), torch.ones(10, 3)])  # (batch, frames, 3)
    cut_x, cut_y = cutmix(x, labels, torch.tensor([1, 0]), alpha=1.0, stride=stride)
    # a pasted stretch: the frames whose labels changed are exactly the steps whose inputs did
    changed_frames = (cut_y[:, :, 0] != labels[:, :, 0]).any(0)
    changed_steps = (cut_x[:, 0, :] != x[:, 0, :]).any(0)
    torch.testing.assert_close(changed_steps, changed_frames.repeat_interleave(stride))
    assert changed_frames.any() and not changed_frames.all()
    torch.testing.assert_close(cut_x[0, :, changed_steps], x[1, :, changed_steps])


def test_reverse_plays_windows_backwards_with_events_swapped():
    from sleepdetect.training.augment import reverse

    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)  # (batch, features, steps)
    labels = torch.rand(2, 4, 3)  # (batch, frames, [sleep, onset, wakeup])
    out_x, out_y = reverse(x, labels, prob=1.0)
    torch.testing.assert_close(out_x, x.flip(-1))
    torch.testing.assert_close(out_y[..., 0], labels[..., 0].flip(1))
    torch.testing.assert_close(out_y[..., 1], labels[..., 2].flip(1))  # onsets were wakeups
    torch.testing.assert_close(out_y[..., 2], labels[..., 1].flip(1))
    same_x, same_y = reverse(x, labels, prob=0.0)
    assert torch.equal(same_x, x) and torch.equal(same_y, labels)


def test_a_checkpoint_of_another_config_is_not_resumed(prepared, tmp_path, capsys):
    cfg = tiny_cfg(prepared, tmp_path)
    fold = train(cfg)
    (fold / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint of this config")
    data, out = f"data.dir={prepared / 'data'}", f"output.dir={tmp_path}"
    again = train(load_config(None, [data, out, *TINY, "optimizer.lr=0.003"]))
    assert "written with another config or data" in capsys.readouterr().out
    assert (again / "model.pt").is_file()


def test_extra_series_join_training_at_their_share_and_never_validate(prepared, tmp_path):
    from sleepdetect.config import ConfigError
    from sleepdetect.training.data import SleepDataModule
    from sleepdetect.training.fold import extra_manifests

    other = load_config(
        None,
        [
            f"data.dir={tmp_path / 'other-data'}",
            f"output.dir={tmp_path}",
            "exp_name=other",
            "data.synthetic.series=2",
            "data.synthetic.days=3",
            "data.synthetic.seed=9",
            *TINY,
        ],
    )
    prepare(other)
    cfg = tiny_cfg(
        prepared,
        tmp_path,
        f"windows.extra=[{other.exp_dir}]",
        "windows.extra_share=0.25",
        "split.fold=0",
    )
    manifest = Manifest.load(Experiment.of(cfg).prepared("train"))
    extra = extra_manifests(cfg, manifest)
    data = SleepDataModule(manifest, cfg.split, cfg.windows, "segmentation", 12, 8, 0, 0, 0, extra)
    draws = data.sampler.draw(0)
    n_own = len(manifest.series)
    assert len(draws) == cfg.windows.per_epoch
    assert (draws[:, 0] >= n_own).sum() == round(0.25 * cfg.windows.per_epoch)
    assert len(data.train_set.features) == n_own + 2
    for series, start, stop in draws[draws[:, 0] >= n_own]:
        assert 0 <= start < stop <= len(data.train_set.features[series])
    assert np.array_equal(data.sampler.draw(0), draws)  # (seed, epoch) alone fix the draws
    assert {s.series_id for s in data.valid_segments} <= {s.series_id for s in manifest.series}
    fold = train(cfg)
    assert (fold / "model.pt").is_file()
    assert json.loads((fold / "inputs.json").read_text())["extra"] == {
        str(extra[0].root): extra[0].sources["series"]["fingerprint"]
    }
    own = tiny_cfg(prepared, tmp_path / "own", f"windows.extra=[{cfg.exp_dir}]")
    with pytest.raises(ConfigError, match="holds this experiment's own series"):
        extra_manifests(own, manifest)


def test_tensorboard_logger_writes_event_files_beside_the_csv_log(prepared, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_cfg(prepared, tmp_path, "trainer.logger=tensorboard")
    fold = train(cfg)
    events = sorted((fold / "tb").glob("version_*/events.out.tfevents.*"))
    assert events, f"no event file under {fold / 'tb'}"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert "val_score" in tags and any(t.startswith("train_loss") for t in tags), tags
    # the CSV log stays, an epoch a row
    assert read_log(fold).drop_nulls("val_score").height == cfg.trainer.max_epochs
    assert (fold / "curves.png").is_file()


def test_mlflow_logger_records_the_run_under_output_dir(prepared, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    fold = train(tiny_cfg(prepared, tmp_path, "trainer.logger=mlflow"))
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("demo")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == fold.name
    assert "val_score" in run.data.metrics


def test_a_missing_logger_package_is_a_clear_error(prepared, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[mlflow\]'"):
        train(tiny_cfg(prepared, tmp_path, "trainer.logger=mlflow"))


def test_the_logger_does_not_make_a_trained_fold_stale(prepared, tmp_path):
    from sleepdetect.training.fold import fold_dict

    a = tiny_cfg(prepared, tmp_path / "a")
    b = tiny_cfg(prepared, tmp_path / "b", "trainer.logger=tensorboard")
    b.output.dir = a.output.dir
    assert fold_dict(a) == fold_dict(b)
