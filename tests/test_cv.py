"""Cross-validation on few series: the nights split, out-of-fold gathering, the nested `tune`,
tuned settings reaching 03_infer, and starting from another bundle (`model.init_from`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
import torch

from sleepdetect.config import PostprocessConfig, load_config
from sleepdetect.core.errors import InputError
from sleepdetect.cv.oof import oof_candidates, read_oof, solution_of
from sleepdetect.cv.tune import load_tuned, run_tune, tune
from sleepdetect.data.prepare import Manifest, prepare
from sleepdetect.data.windows import SeriesLabels, WindowSampler, night_cuts, split_segments
from sleepdetect.events.metric import event_detection_ap_table
from sleepdetect.experiment import Experiment

TINY = [
    "model.name=DayGRU",
    "model.downsample_rate=12",
    "model.params={hidden_size: 8, num_layers: 1, dropout: 0.0}",
    "windows.length=2880",
    "windows.per_epoch=16",
    "windows.valid_stride=1440",
    "trainer.batch_size=8",
    "trainer.max_epochs=1",
    "trainer.checkpoint=last",
    "trainer.fold_workers=2",  # the fixture trains two folds at once, in two processes
    "split.kind=nights",
    "split.n_folds=3",
    "split.margin=720",
    "prepare.features=[anglez, enmo, hour_sin, hour_cos, day_repeat]",
    "tune.bootstrap=50",
    "tune.grid={distance: [72, 480], day_norm: [none, max]}",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two synthetic series of about 8 days, every fold of a 3-fold nights split trained."""
    from sleepdetect.stages.train import train_folds

    out = tmp_path_factory.mktemp("cv")
    cfg = load_config(
        None,
        [
            f"data.dir={out / 'data'}",
            f"output.dir={out}",
            "data.synthetic.series=2",
            "data.synthetic.days=8",
            "data.synthetic.seed=5",
            *TINY,
        ],
    )
    prepare(cfg)
    train_folds(cfg)
    return cfg


def labels_of(manifest: Manifest, events: pl.DataFrame) -> dict[str, SeriesLabels]:
    return {
        s.series_id: SeriesLabels.from_events(events.filter(pl.col("series_id") == s.series_id))
        for s in manifest.series
    }


# ---------------------------------------------------------------- the nights split


def test_night_cuts_hold_each_labelled_night_whole():
    events = pl.DataFrame(
        {
            "night": [1, 1, 2, 2, 3, 3, 4, 4],
            "event": ["onset", "wakeup"] * 4,
            "step": [100, 200, None, None, 500, 640, 900, None],
        },
        schema_overrides={"step": pl.Int64},
    )
    cuts = night_cuts(events, 1000)
    np.testing.assert_array_equal(cuts, [0, 350, 770, 1000])  # night 2 has no events


@pytest.mark.parametrize("n_folds", [2, 3, 5])
def test_nights_split_validates_each_night_once_and_trains_beside_it(trained, n_folds):
    m = Manifest.load(Experiment.of(trained).prepared("train"))
    events = m.read_events()
    labels = labels_of(m, events)
    margin = 720
    nights = (
        events.filter(pl.col("step").is_not_null())
        .group_by("series_id", "night")
        .agg(pl.col("step").min().alias("a"), pl.col("step").max().alias("b"))
    )
    seen = {(sid, night): 0 for sid, night, _, _ in nights.iter_rows()}
    for fold in range(n_folds):
        train, valid = split_segments(
            m, labels, "nights", n_folds, fold, 0.3, 0, events=events, margin=margin
        )
        for v in valid:
            for sid, night, a, b in nights.iter_rows():
                if sid == v.series_id and v.start <= a and b < v.end:
                    seen[(sid, night)] += 1
            for t in (t for t in train if t.series_id == v.series_id):
                # training stretches keep `margin` steps away from every validation step
                assert t.end + margin <= v.start or v.end + margin <= t.start
        # and so does every window the sampler draws, edges included
        index = {s.series_id: i for i, s in enumerate(m.series)}
        ids = [s.series_id for s in m.series]
        draws = WindowSampler(train, index, labels, 2880, 400, 0.5, seed=fold).draw(0)
        for series, start, stop in draws:
            for v in (v for v in valid if v.series_id == ids[series]):
                assert stop + margin <= v.start or v.end + margin <= start
    assert set(seen.values()) == {1}, seen


def test_nights_split_needs_enough_nights(trained):
    m = Manifest.load(Experiment.of(trained).prepared("train"))
    events = m.read_events()
    with pytest.raises(ValueError, match="validates nothing; lower split.n_folds"):
        split_segments(m, labels_of(m, events), "nights", 40, 39, 0.3, 0, events=events)


# ---------------------------------------------------------------- out of fold


def test_folds_trained_with_the_same_config_are_kept(trained, capsys):
    from sleepdetect.stages.train import train_folds

    before = {f: (Experiment.of(trained).fold(f) / "model.pt").stat().st_mtime_ns for f in range(3)}
    train_folds(trained)
    out = capsys.readouterr().out
    assert out.count("already trained with this config") == 3
    after = {f: (Experiment.of(trained).fold(f) / "model.pt").stat().st_mtime_ns for f in range(3)}
    assert before == after


def test_oof_covers_every_labelled_night_once(trained):
    oof = read_oof(trained.exp_dir)
    assert set(oof["fold"].unique()) == {0, 1, 2}
    assert oof.select("series_id", "step").is_duplicated().sum() == 0
    m = Manifest.load(Experiment.of(trained).prepared("train"))
    solution = m.read_events().filter(pl.col("step").is_not_null())
    assert len(solution_of(oof, solution)) == len(solution)
    metrics = pl.read_csv(Experiment.of(trained).oof_metrics)
    assert metrics.filter(pl.col("event") == "score")["ap"][0] >= 0


def test_a_retrained_fold_makes_the_oof_file_stale(trained, tmp_path):
    exp = tmp_path / trained.exp_name
    shutil.copytree(trained.exp_dir, exp)
    with open(Experiment(exp).fold(1) / "model.pt", "ab") as f:
        f.write(b"\0")
    with pytest.raises(InputError, match="stale"):
        read_oof(exp)


# ---------------------------------------------------------------- tune


def test_nested_score_equals_the_one_computed_by_hand(trained):
    m = Manifest.load(Experiment.of(trained).prepared("train"))
    oof = read_oof(trained.exp_dir)
    base = PostprocessConfig()
    grid = {"distance": [72, 480], "day_norm": ["none", "max"], "score_th": [0.001, 0.05]}
    result = run_tune(oof, m, base, grid, n_bootstrap=0)

    solution = solution_of(oof, m.read_events().filter(pl.col("step").is_not_null()))
    settings = [
        {"distance": d, "day_norm": n, "score_th": t}
        for d in grid["distance"]
        for n in grid["day_norm"]
        for t in grid["score_th"]
    ]
    cands = [
        oof_candidates(oof, m, PostprocessConfig(**s)) for s in settings
    ]  # each setting's candidates, every fold
    nested, per_fold = [], []
    for k in range(3):
        inner = [
            event_detection_ap_table(
                solution.filter(pl.col("fold") != k), c.filter(pl.col("fold") != k)
            )[1]
            for c in cands
        ]
        best = int(np.argmax(inner))  # the first of equal best ones
        assert result.chosen[k]["distance"] == settings[best]["distance"]
        nested.append(cands[best].filter(pl.col("fold") == k))
        per_fold.append(
            event_detection_ap_table(solution.filter(pl.col("fold") == k), nested[-1])[1]
        )
    assert result.nested_score == pytest.approx(np.mean(per_fold), abs=1e-12)
    pooled = event_detection_ap_table(solution, pl.concat(nested))[1]
    assert result.pooled_score == pytest.approx(pooled, abs=1e-12)
    overall = [event_detection_ap_table(solution, c)[1] for c in cands]
    assert result.best == settings[int(np.argmax(overall))]


def test_tune_writes_the_setting_and_infer_uses_it(trained, tmp_path, capsys):
    from sleepdetect.stages.infer import infer

    cfg = load_config(
        None, [f"output.dir={trained.output.dir}", f"data.dir={trained.data.dir}", *TINY]
    )
    result = tune(cfg)
    out = capsys.readouterr().out
    assert "nested OOF (mean over folds): score" in out and "bootstrap interval" in out
    lo, hi = result.interval
    assert lo <= hi
    tuned = load_tuned(cfg.exp_dir)
    assert (tuned.distance, tuned.day_norm) == (result.best["distance"], result.best["day_norm"])

    # 03_infer with infer.tuned post-processes as tune chose, not as the params say
    other = {"distance": 480 if tuned.distance == 72 else 72}
    common = [*TINY, "infer.phase=train", f"postprocess.distance={other['distance']}"]
    plain = pl.read_csv(
        infer(
            load_config(
                None, [f"output.dir={trained.output.dir}", f"data.dir={trained.data.dir}", *common]
            )
        )
    )
    with_tuned = pl.read_csv(
        infer(
            load_config(
                None,
                [
                    f"output.dir={trained.output.dir}",
                    f"data.dir={trained.data.dir}",
                    *common,
                    "infer.tuned=true",
                ],
            )
        )
    )
    assert len(plain) != len(with_tuned)
    gaps = with_tuned.filter(pl.col("event") == "onset").sort("series_id", "step")
    steps = gaps.group_by("series_id").agg(pl.col("step").diff().drop_nulls().min().alias("gap"))
    assert steps["gap"].min() >= tuned.distance


def test_tuned_settings_of_other_models_are_refused(trained, tmp_path):
    exp = tmp_path / trained.exp_name
    shutil.copytree(trained.exp_dir, exp)
    with pytest.raises(InputError, match="infer.tuned needs"):
        shutil.rmtree(Experiment(exp).tune, ignore_errors=True)
        load_tuned(exp)
    shutil.copytree(Experiment.of(trained).tune, Experiment(exp).tune)
    Experiment(exp).oof_record.write_text('{"folds": {"0": "another"}}\n')
    with pytest.raises(InputError, match="run tune again"):
        load_tuned(exp)


# ---------------------------------------------------------------- init_from


def test_a_retrained_init_bundle_makes_its_folds_stale(trained, tmp_path):
    from sleepdetect.training.fold import fold_inputs, trained_with

    source = tmp_path / "pretrained"
    shutil.copytree(Experiment.of(trained).fold(0), source)
    cfg = load_config(
        None,
        [
            f"output.dir={tmp_path}",
            f"data.dir={trained.data.dir}",
            *TINY,
            f"model.init_from={source}",
        ],
    )
    fold_cfg = load_config(
        None,
        [
            f"output.dir={tmp_path}",
            f"data.dir={trained.data.dir}",
            *TINY,
            f"model.init_from={source}",
            "split.fold=1",
        ],
    )
    shutil.copytree(Experiment.of(trained).prepared("train"), Experiment.of(cfg).prepared("train"))
    from sleepdetect.training.fold import train

    fold = train(fold_cfg)
    manifest = Manifest.load(Experiment.of(cfg).prepared("train"))
    assert trained_with(fold, fold_cfg, fold_inputs(fold_cfg, manifest))
    with open(source / "model.pt", "ab") as f:  # the pretrained bundle changes
        f.write(b"\0")
    assert not trained_with(fold, fold_cfg, fold_inputs(fold_cfg, manifest))
    # The pretrained folder becomes an ensemble, as the shipped day_gru_synth_v1 did: the
    # fold's config, which names the folder, no longer loads; the fold is stale, not an error.
    member = source / "fold0"
    member.mkdir()
    for f in [p for p in source.iterdir() if p.is_file()]:
        shutil.move(f, member / f.name)
    shutil.copytree(member, source / "fold0-seed1")
    (source / "ensemble.yaml").write_text("members: [fold0, fold0-seed1]\n")
    now = load_config(
        None,
        [
            f"output.dir={tmp_path}",
            f"data.dir={trained.data.dir}",
            *TINY,
            f"model.init_from={member}",
            "split.fold=1",
        ],
    )
    assert not trained_with(fold, now, fold_inputs(now, manifest))


def test_init_from_starts_from_the_named_weights(trained, tmp_path):
    from sleepdetect.training.fold import train

    source = Experiment.of(trained).fold(0)
    cfg = load_config(
        None,
        [
            f"output.dir={tmp_path}",
            f"data.dir={trained.data.dir}",
            *TINY,
            f"model.init_from={source}",
            "optimizer.lr=0.0",
            "split.fold=1",
        ],
    )
    shutil.copytree(Experiment.of(trained).prepared("train"), Experiment.of(cfg).prepared("train"))
    fold = train(cfg)
    start = torch.load(source / "model.pt", weights_only=True)
    end = torch.load(fold / "model.pt", weights_only=True)
    # learning rate 0: the weights stay the ones it started from
    assert all(torch.equal(start[k], end[k]) for k in start)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.params={hidden_size: 12, num_layers: 1, dropout: 0.0}", "do not fit this model"),
        ("prepare.features=[anglez, enmo, hour_sin, hour_cos]", "trained on features"),
        ("model.init_from=/nowhere/fold0", "no trained bundle there; train it first"),
    ],
)
def test_init_from_a_bundle_that_does_not_fit_fails_clearly(trained, tmp_path, override, message):
    from sleepdetect.training.fold import train

    cfg = load_config(
        None,
        [
            f"data.dir={trained.data.dir}",
            f"output.dir={tmp_path}",
            f"data.dir={trained.data.dir}",
            *TINY,
            f"model.init_from={trained.exp_dir / 'fold0'}",
            override,
            "split.fold=0",
        ],
    )
    prepare(cfg)
    with pytest.raises(InputError, match=message):
        train(cfg)


def test_second_stage_nested_score_uses_other_folds_only(trained):
    pytest.importorskip("lightgbm")
    from sleepdetect.cv.oof import score_traces
    from sleepdetect.cv.stage2 import rescore_out_of_fold

    m = Manifest.load(Experiment.of(trained).prepared("train"))
    oof = read_oof(trained.exp_dir)
    grid = {"distance": [72, 480]}
    result = run_tune(oof, m, PostprocessConfig(), grid, n_bootstrap=0, stage2=True)
    solution = solution_of(oof, m.read_events().filter(pl.col("step").is_not_null()))
    traces = score_traces(oof, m)
    per_fold = []
    for chosen in result.chosen:
        k = chosen["fold"]
        cands = oof_candidates(oof, m, PostprocessConfig(distance=chosen["distance"]))
        rescored = rescore_out_of_fold(cands, traces, m, solution)
        per_fold.append(
            event_detection_ap_table(
                solution.filter(pl.col("fold") == k), rescored.filter(pl.col("fold") == k)
            )[1]
        )
    assert result.stage2_score == pytest.approx(np.mean(per_fold), abs=1e-12)


# ---------------------------------------------------------------- outside bundles


def test_outside_bundles_join_the_oof_scores_and_the_submission(trained, tmp_path):
    from sleepdetect.config import ConfigError
    from sleepdetect.cv.oof import gather_oof
    from sleepdetect.inference.bundles import load_bundle
    from sleepdetect.inference.predict import predict_series
    from sleepdetect.stages.infer import infer

    outside = tmp_path / "outside"  # as if trained on other data (the synthetic pretraining)
    shutil.copytree(Experiment.of(trained).fold(0), outside)
    text = (outside / "config.yaml").read_text()
    (outside / "config.yaml").write_text(text.replace(trained.data.dir, str(tmp_path / "other")))
    shutil.copytree(trained.exp_dir, tmp_path / trained.exp_name)
    base = [f"output.dir={tmp_path}", f"data.dir={trained.data.dir}", *TINY]
    with_outside = [*base, f"ensemble.outside=[{outside}]"]
    cfg = load_config(None, [*with_outside, "ensemble.outside_weight=0.25"])
    gather_oof(cfg)
    plain, blended = read_oof(trained.exp_dir), read_oof(cfg.exp_dir)
    sid = plain["series_id"][0]
    bundle = load_bundle(outside)
    manifest = Manifest.load(Experiment.of(cfg).prepared("train"))
    theirs = predict_series(
        bundle.model,
        manifest.features(sid),
        bundle.config.windows.length,
        bundle.config.windows.valid_stride,
    )
    mine = plain.filter(pl.col("series_id") == sid)
    ours = blended.filter(pl.col("series_id") == sid)
    expected = 0.75 * mine["onset"].to_numpy() + 0.25 * theirs[mine["step"].to_numpy(), 0]
    np.testing.assert_allclose(ours["onset"].to_numpy(), expected, atol=1e-6)

    submission = infer(load_config(None, [*with_outside, "infer.phase=train"]))
    record = json.loads((submission.parent / "submission.json").read_text())
    assert [b["share"] for b in record["bundles"]] == pytest.approx([0.5 / 3] * 3 + [0.5])

    with open(outside / "model.pt", "ab") as f:  # the outside bundle retrained
        f.write(b"\0")
    with pytest.raises(InputError, match="stale"):
        read_oof(cfg.exp_dir)
    own = load_config(None, [*base, f"ensemble.outside=[{trained.exp_dir / 'fold0'}]"])
    with pytest.raises(ConfigError, match="must have seen none of it"):
        gather_oof(own)


def test_infer_keeps_the_scores_of_the_plotted_nights_series_only(trained, tmp_path, monkeypatch):
    """At competition scale every series' per-step scores would be about 1 GB: 03_infer keeps
    those of the series whose nights nights.png shows, and no others."""
    import sleepdetect.stages.infer as stage
    from sleepdetect import plots
    from sleepdetect.stages.infer import infer

    real_picks, real_frame = plots.night_picks, stage.score_frame
    monkeypatch.setattr(stage, "night_picks", lambda solution, n_nights=4: real_picks(solution, 1))
    kept = []
    monkeypatch.setattr(
        stage, "score_frame", lambda sid, s, *a: kept.append(sid) or real_frame(sid, s, *a)
    )
    shutil.copytree(trained.exp_dir, tmp_path / trained.exp_name)
    cfg = load_config(
        None, [f"output.dir={tmp_path}", f"data.dir={trained.data.dir}", *TINY, "infer.phase=train"]
    )
    submission = infer(cfg)
    manifest = Manifest.load(Experiment.of(cfg).prepared("train"))
    assert len(manifest.series) == 2
    first = real_picks(manifest.read_events().drop_nulls("step"), 1)["series_id"].to_list()
    assert kept == first  # one series of the two
    assert (submission.parent / "nights.png").is_file()
    assert pl.read_csv(submission)["series_id"].n_unique() == 2  # every series still predicted


# ---------------------------------------------------------------- seeds


def test_seeds_add_models_to_each_fold_and_average_their_oof(trained, tmp_path, capsys):
    from sleepdetect.inference.bundles import find_bundles
    from sleepdetect.stages.train import train_folds

    shutil.copytree(trained.exp_dir, tmp_path / trained.exp_name)
    base = [f"output.dir={tmp_path}", f"data.dir={trained.data.dir}", *TINY]
    cfg = load_config(None, [*base, "trainer.seeds=2", "tune.bootstrap=10"])
    train_folds(cfg)
    # the first model of each fold is kept: seeds and tune do not change it
    assert capsys.readouterr().out.count("already trained with this config") == 3
    exp = cfg.exp_dir
    assert [p.name for p in find_bundles(cfg)] == [
        "fold0",
        "fold0-seed1",
        "fold1",
        "fold1-seed1",
        "fold2",
        "fold2-seed1",
    ]
    first = pl.read_parquet(Experiment(exp).fold(1) / "oof.parquet")
    second = pl.read_parquet(Experiment(exp).fold(1, 1) / "oof.parquet")
    assert first.select("series_id", "step").equals(second.select("series_id", "step"))
    assert not np.allclose(first["onset"].to_numpy(), second["onset"].to_numpy())
    oof = read_oof(exp).filter(pl.col("fold") == 1)
    expected = (first["onset"].to_numpy() + second["onset"].to_numpy()) / 2
    np.testing.assert_allclose(oof["onset"].to_numpy(), expected, atol=1e-6)
    record = json.loads(Experiment(exp).oof_record.read_text())["folds"]
    assert sorted(record) == sorted(p.name for p in find_bundles(cfg))
    # back to one seed: the second models are in no OOF score, so inference leaves them out
    one = load_config(None, [*base, "trainer.seeds=1"])
    assert [p.name for p in find_bundles(one)] == ["fold0", "fold1", "fold2"]
    assert "fold0-seed1, fold1-seed1, fold2-seed1 left out" in capsys.readouterr().out
