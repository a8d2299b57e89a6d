"""Stage-2 rescoring: features, soft targets, the out-of-fold protocol and its gain.

The case is built by hand on prepared synthetic series: per-step score traces with a Gaussian
bump near each labelled event (modest heights) and decoy bumps in the daytime (higher), so the
raw scores rank decoys first, while the time of day and the activity around a candidate say
which is which.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sleepdetect.config import PostprocessConfig, load_config
from sleepdetect.cv import stage2
from sleepdetect.cv.oof import oof_candidates, score_traces, solution_of
from sleepdetect.data.prepare import Manifest, SeriesEntry, prepare
from sleepdetect.data.synthetic import write_synthetic
from sleepdetect.events.metric import TOLERANCES, event_detection_ap_table
from sleepdetect.events.postprocess import STEPS_PER_DAY, STEPS_PER_HOUR, day_start_of

pytest.importorskip("lightgbm")


@dataclass
class Case:
    manifest: Manifest
    oof: pl.DataFrame
    candidates: pl.DataFrame
    scores: dict[str, np.ndarray]
    solution: pl.DataFrame  # labelled events inside the OOF stretches, with their fold


def _bump(trace: np.ndarray, at: int, height: float, sigma: int = 24) -> None:
    n = len(trace)
    lo, hi = max(0, at - 5 * sigma), min(n, at + 5 * sigma)
    if lo >= hi:
        return
    x = np.arange(lo, hi)
    np.maximum(trace[lo:hi], height * np.exp(-0.5 * ((x - at) / sigma) ** 2), out=trace[lo:hi])


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    tmp = tmp_path_factory.mktemp("stage2")
    write_synthetic(tmp / "data", n_series=3, days=5, seed=3)
    cfg = load_config(
        None,
        [
            f"data.dir={tmp / 'data'}",
            f"output.dir={tmp / 'out'}",
            "prepare.features=[anglez, enmo, hour_sin, hour_cos, day_repeat]",
        ],
    )
    manifest = prepare(cfg)
    labels = manifest.read_events().filter(pl.col("step").is_not_null())
    rng = np.random.default_rng(0)
    frames = []
    for i, entry in enumerate(manifest.series):
        n = entry.n_steps
        trace = np.zeros((n, 2))
        mine = labels.filter(pl.col("series_id") == entry.series_id)
        for event, step in mine.select("event", "step").iter_rows():
            c = 0 if event == "onset" else 1
            _bump(trace[:, c], step + int(rng.integers(-24, 25)), rng.uniform(0.2, 0.5))
        noon = day_start_of(entry.first_timestamp, 12)
        for day in range(-1, n // STEPS_PER_DAY + 1):
            for c in range(2):
                for _ in range(3):  # daytime decoys, 9:00 to 17:00, scored higher
                    at = noon + day * STEPS_PER_DAY + int(rng.integers(-3, 5) * STEPS_PER_HOUR)
                    _bump(trace[:, c], at + int(rng.integers(0, 600)), rng.uniform(0.5, 1.0))
        # two folds per series, cut at the local noon nearest its middle (between nights)
        cut = noon + round((n // 2 - noon) / STEPS_PER_DAY) * STEPS_PER_DAY
        step = np.arange(n)
        frames.append(
            pl.DataFrame(
                {
                    "series_id": entry.series_id,
                    "step": step,
                    "onset": trace[:, 0].astype(np.float32),
                    "wakeup": trace[:, 1].astype(np.float32),
                    "fold": np.where(step < cut, 2 * i, 2 * i + 1),
                }
            )
        )
    oof = pl.concat(frames)
    candidates = oof_candidates(oof, manifest, PostprocessConfig(peak_offsets=[-96, -36, 36, 96]))
    return Case(manifest, oof, candidates, score_traces(oof, manifest), solution_of(oof, labels))


@pytest.fixture(scope="module")
def rescored(case: Case) -> pl.DataFrame:
    return stage2.rescore_out_of_fold(case.candidates, case.scores, case.manifest, case.solution)


def _ap(solution: pl.DataFrame, candidates: pl.DataFrame) -> float:
    return event_detection_ap_table(solution, candidates)[1]


# ---------------------------------------------------------------- targets


def _brute_targets(candidates: pl.DataFrame, solution: pl.DataFrame) -> np.ndarray:
    out = []
    labels = list(solution.drop_nulls("step").select("series_id", "event", "step").iter_rows())
    for sid, step, event in candidates.select("series_id", "step", "event").iter_rows():
        dists = [abs(step - s) for i, e, s in labels if i == sid and e == event]
        d = min(dists) if dists else np.inf
        out.append(sum(d < t for t in TOLERANCES) / len(TOLERANCES))
    return np.array(out)


def test_soft_targets_equal_a_brute_force_loop(case: Case) -> None:
    got = stage2.soft_targets(case.candidates, case.solution)
    np.testing.assert_allclose(got, _brute_targets(case.candidates, case.solution))
    assert 0 < (got > 0).sum() < len(got)


def test_soft_targets_by_distance() -> None:
    solution = pl.DataFrame(
        {
            "series_id": ["a", "a", "a", "b"],
            "event": ["onset", "wakeup", "onset", "onset"],
            "step": [1000, 5000, None, 20000],
        },
        schema_overrides={"step": pl.Int64},
    )
    steps = [1000, 1011, 1012, 1359, 1360, 5000, 640, 5000, 1000]
    events = ["onset"] * 5 + ["onset", "onset", "wakeup", "wakeup"]
    candidates = pl.DataFrame(
        {"series_id": ["a"] * 8 + ["c"], "step": steps, "event": events, "score": 0.5}
    )
    got = stage2.soft_targets(candidates, solution)
    # on the label; < 12; at 12 (not < 12); at 359 (< 360 only); at 360; an onset candidate
    # on a wakeup label; 360 before; on it; a series without labels
    np.testing.assert_allclose(got, [1.0, 1.0, 0.9, 0.1, 0.0, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(got, _brute_targets(candidates, solution))


# ---------------------------------------------------------------- features


def test_features_one_finite_row_per_candidate(case: Case) -> None:
    cand = case.candidates
    feats = stage2.candidate_features(cand, case.scores, case.manifest)
    assert feats.height == cand.height
    assert all(dtype == pl.Float64 for dtype in feats.dtypes)
    values = feats.to_numpy()
    assert np.isfinite(values).all()
    for name in (
        "score",
        "is_wakeup",
        "day_rank",
        "score_over_day_max",
        "score_over_day_sum",
        "hour_sin",
        "hour_cos",
        "self_at",
        "other_max_360",
        "enmo_before_1440",
        "anglez_absdiff_change_360",
        "day_repeat",
        "other_nearest",
    ):
        assert name in feats.columns, name
    assert (feats["is_wakeup"].to_numpy() == (cand["event"] == "wakeup").to_numpy()).all()

    # the night's best has rank 1 and score / max 1; ranks fall as scores do
    best = feats.filter(pl.col("day_rank") == 1)
    np.testing.assert_allclose(best["score_over_day_max"].to_numpy(), 1.0)
    assert (feats["score_over_day_max"] <= 1 + 1e-12).all()
    assert (feats["score_over_day_sum"] <= feats["score_over_day_max"] + 1e-12).all()

    # local time agrees with the prepared hour features (up to daylight-saving switches)
    m = case.manifest
    names = m.feature_names
    shifts = []
    for sid in cand["series_id"].unique().to_list():
        rows = (cand["series_id"] == sid).to_numpy()
        at = cand["step"].to_numpy()[rows]
        prepared = m.features(sid)[at][:, [names.index("hour_sin"), names.index("hour_cos")]]
        mine = feats.select("hour_sin", "hour_cos").to_numpy()[rows]
        hours = [np.degrees(np.arctan2(a[:, 0], a[:, 1])) / 15 for a in (prepared, mine)]
        shift = np.round(np.mod(hours[0] - hours[1] + 12, 24) - 12, 3)
        assert (shift[at < STEPS_PER_DAY] == 0).all()  # the first UTC offset: the same clock
        shifts.append(shift)
    shift = np.concatenate(shifts)
    assert set(np.unique(shift)) <= {-1.0, 0.0, 1.0}  # later on, 1 h off after a DST switch
    assert np.mean(shift == 0) > 0.5


def test_features_match_direct_computation(case: Case) -> None:
    cand = case.candidates
    feats = stage2.candidate_features(cand, case.scores, case.manifest)
    rng = np.random.default_rng(1)
    for i in rng.choice(cand.height, 25, replace=False):
        sid, step, event = cand.row(int(i))[:3]
        c = 0 if event == "onset" else 1
        trace = case.scores[sid]
        row = feats.row(int(i), named=True)
        lo, hi = max(0, step - 60), step + 61
        assert row["self_at"] == pytest.approx(trace[step, c])
        assert row["self_max_60"] == pytest.approx(trace[lo:hi, c].max())
        assert row["other_mean_60"] == pytest.approx(trace[lo:hi, 1 - c].mean())
        enmo = np.asarray(case.manifest.feature(sid, "enmo"), np.float64)
        before = enmo[max(0, step - 360) : step].mean() if step > 0 else 0.0
        after = enmo[step : step + 360].mean()
        assert row["enmo_before_360"] == pytest.approx(before)
        assert row["enmo_after_360"] == pytest.approx(after)
        assert row["enmo_change_360"] == pytest.approx((before - after) * (1 if c == 0 else -1))
        other = cand.filter((pl.col("series_id") == sid) & (pl.col("event") != event))["step"]
        dist = np.abs(other.to_numpy() - step)
        expect = min(dist.min(), STEPS_PER_DAY) if len(dist) else STEPS_PER_DAY
        assert row["other_nearest"] == expect


def test_features_do_not_depend_on_row_order(case: Case) -> None:
    cand = case.candidates
    feats = stage2.candidate_features(cand, case.scores, case.manifest)
    perm = np.random.default_rng(2).permutation(cand.height)
    shuffled = stage2.candidate_features(cand[perm], case.scores, case.manifest)
    np.testing.assert_array_equal(shuffled.to_numpy(), feats.to_numpy()[perm])


def test_candidate_features_are_fast_on_a_long_series(tmp_path: Path) -> None:
    n, k = 207_360, 5_000
    rng = np.random.default_rng(0)
    names = ["anglez", "enmo", "hour_sin", "hour_cos", "enmo_std_60", "day_repeat"]
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features" / "long.npy", rng.standard_normal((n, 6)).astype(np.float32))
    manifest = Manifest(
        root=tmp_path,
        phase="train",
        sources={},
        feature_names=names,
        normalisation={},
        step_seconds=5,
        series=[SeriesEntry("long", n, "2018-08-14T15:30:00-0400", "features/long.npy")],
        events=None,
        prepare_config={},
    )
    cand = pl.DataFrame(
        {
            "series_id": ["long"] * k,
            "step": np.sort(rng.choice(n, k, replace=False)),
            "event": rng.choice(["onset", "wakeup"], k).tolist(),
            "score": rng.random(k),
        }
    )
    scores = {"long": rng.random((n, 2)).astype(np.float32)}
    start = time.perf_counter()
    feats = stage2.candidate_features(cand, scores, manifest)
    elapsed = time.perf_counter() - start
    assert feats.height == k and "enmo_std_60" in feats.columns
    assert elapsed < 3.0, f"candidate_features took {elapsed:.2f} s for {k} candidates"


# ---------------------------------------------------------------- out of fold


def test_rescore_out_of_fold_keeps_rows_and_order(case: Case, rescored: pl.DataFrame) -> None:
    out = rescored
    keys = ["series_id", "step", "event", "fold"]
    assert out.select(keys).equals(case.candidates.select(keys))
    score = out["score"].to_numpy()
    assert np.isfinite(score).all() and (score > 0).all() and (score < 1).all()
    assert not np.allclose(score, case.candidates["score"].to_numpy())


def test_rescore_out_of_fold_trains_only_on_other_folds(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    cand = case.candidates
    fold = cand["fold"].to_numpy()
    folds = np.unique(fold)
    sizes = []
    real_fit = stage2.fit_rescorer

    def spy(features, targets, seed=0, **params):
        sizes.append(features.height)
        return real_fit(features, targets, seed=seed, **params)

    monkeypatch.setattr(stage2, "fit_rescorer", spy)
    base = stage2.rescore_out_of_fold(cand, case.scores, case.manifest, case.solution)
    assert sizes == [int((fold != k).sum()) for k in folds]

    # Without fold k's labels, fold k scores the same (its model never saw them), while the
    # other folds, whose models trained on fold k, score differently.
    k = int(folds[np.argmax([(case.solution["fold"] == f).sum() for f in folds])])
    held = fold == k
    fewer = case.solution.filter(pl.col("fold") != k)
    changed = stage2.rescore_out_of_fold(cand, case.scores, case.manifest, fewer)
    before, after = base["score"].to_numpy(), changed["score"].to_numpy()
    np.testing.assert_array_equal(after[held], before[held])
    assert not np.allclose(after[~held], before[~held])


def test_rescoring_beats_misleading_raw_scores_on_held_out_folds(
    case: Case, rescored: pl.DataFrame
) -> None:
    raw = _ap(case.solution, case.candidates)
    new = _ap(case.solution, rescored)
    assert raw < 0.4  # the decoys outrank the events
    assert new > raw + 0.2, (raw, new)


def test_rescore_out_of_fold_needs_two_folds(case: Case) -> None:
    one = case.candidates.with_columns(fold=pl.lit(0, pl.Int64))
    with pytest.raises(ValueError, match="2\\+ folds"):
        stage2.rescore_out_of_fold(one, case.scores, case.manifest, case.solution)


def test_fit_rescorer_is_deterministic_and_ranks_by_target(case: Case) -> None:
    feats = stage2.candidate_features(case.candidates, case.scores, case.manifest)
    targets = stage2.soft_targets(case.candidates, case.solution)
    booster = stage2.fit_rescorer(feats, targets, seed=0)
    again = stage2.fit_rescorer(feats, targets, seed=0)
    direct = booster.predict(feats.to_numpy())
    np.testing.assert_array_equal(again.predict(feats.to_numpy()), direct)  # deterministic
    # what rescore_out_of_fold predicts with: the booster's own columns, by name
    np.testing.assert_allclose(stage2._predict(booster, feats), direct, rtol=1e-12)
    # fitted on the labels it is scored on, the model ranks candidates by their target
    assert np.corrcoef(direct, targets)[0, 1] > 0.8

    with pytest.raises(ValueError, match="prepare the same features"):
        stage2._predict(booster, feats.drop("enmo_before_360"))


def test_missing_lightgbm_says_how_to_install(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    feats = pl.DataFrame({"score": [0.1, 0.9]})
    with pytest.raises(ImportError, match=r"pip install -e '\.\[stage2\]'"):
        stage2.fit_rescorer(feats, np.array([0.0, 1.0]))
