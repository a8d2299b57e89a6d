"""HDCZA baseline: the published rules on constructed signals, and 03_infer with it.

Every expected step below is worked out by hand from how the signal is built: still blocks
are runs of |anglez change| = 0 amid 5 degrees a step, long enough that the 61-step rolling
median keeps their edges exactly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sleepdetect.baselines.hdcza import HDCZA, build_baseline, day_bounds, prepared_inputs
from sleepdetect.config import ConfigError, load_config
from sleepdetect.core.constants import STEPS_PER_DAY
from sleepdetect.data.io import read_series
from sleepdetect.experiment import Experiment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from hdcza_skdh import compare  # noqa: E402  (the oracle comparison, also a bench script)

PARAMS = Path(__file__).resolve().parents[1] / "params" / "hdcza.yaml"
NOON = 12 * 3600


def clock(n_steps: int, start_seconds: int = NOON) -> np.ndarray:
    return (start_seconds + 5 * np.arange(n_steps)) % 86400


def moving_with_still(n_steps: int, blocks: list[tuple[int, int]]) -> np.ndarray:
    absdiff = np.full(n_steps, 5.0)
    for a, b in blocks:
        absdiff[a:b] = 0.0
    return absdiff


# blocks of one noon-to-noon day: A and B 600 steps (50 min) apart, filled; C 1000 steps
# (83 min) after B, not filled; S exactly 30 min long, so not "longer than 30 minutes"
A, B, C, S = (3000, 5000), (5600, 9000), (10000, 11000), (11400, 11760)


def test_window_fills_a_short_gap_and_not_a_long_one() -> None:
    n = STEPS_PER_DAY
    hdcza = HDCZA(secondary=True)
    windows = hdcza.series_windows(
        moving_with_still(n, [A, B, C, S]), np.ones(n), clock(n), np.zeros(n)
    )
    main, second = windows
    assert (main.kind, main.onset, main.wakeup) == ("hdcza", 3000, 8999)
    # 5400 of its 6000 steps are still (the 600-step gap is not), and it lasts 6000 steps
    assert main.score == pytest.approx(0.9 * 6000 / STEPS_PER_DAY)
    # C is the second block; S, had it counted, would have joined it (gap 400 < 720)
    assert (second.kind, second.onset, second.wakeup) == ("secondary", 10000, 10999)
    assert second.score == pytest.approx(0.1 * 1000 / STEPS_PER_DAY)
    assert second.score < main.score


def test_no_secondary_candidates_by_default() -> None:
    n = STEPS_PER_DAY
    windows = HDCZA().series_windows(
        moving_with_still(n, [A, B, C]), np.ones(n), clock(n), np.zeros(n)
    )
    assert [(w.onset, w.wakeup) for w in windows] == [(3000, 8999)]


def test_threshold_is_the_percentile_times_15_clipped() -> None:
    hdcza = HDCZA()
    assert hdcza.threshold(np.full(1000, 0.02)) == pytest.approx(0.3)  # inside the range
    assert hdcza.threshold(np.full(1000, 0.001)) == pytest.approx(0.13)  # 0.015: raised
    assert hdcza.threshold(np.full(1000, 10.0)) == pytest.approx(0.50)  # 150: lowered
    # the 10th percentile of 0..99 (linear, as R's default quantile) is 9.9
    assert HDCZA(threshold_max=1000.0).threshold(np.arange(100.0)) == pytest.approx(9.9 * 15)


def test_a_block_just_above_the_threshold_is_not_still() -> None:
    n = STEPS_PER_DAY
    absdiff = np.full(n, 5.0)
    absdiff[2000:8000] = 0.5  # the threshold is clipped to 0.5 here, and still means below it
    windows = HDCZA().series_windows(absdiff, np.ones(n), clock(n), np.zeros(n))
    assert [w.kind for w in windows] == ["fallback"]


def test_fallback_is_12_hours_around_the_least_active_5_hours() -> None:
    n = STEPS_PER_DAY
    enmo = np.ones(n)
    enmo[6000:9600] = 0.0  # the least active 5 h (3600 steps), midpoint 7800
    windows = HDCZA().series_windows(np.full(n, 5.0), enmo, clock(n), np.zeros(n))
    (w,) = windows
    assert (w.kind, w.onset, w.wakeup) == ("fallback", 7800 - 4320, 7800 + 4320 - 1)
    assert 0 < w.score <= 1


def test_fallback_needs_five_hours_of_day() -> None:
    n = 3000  # a partial day of about 4 h, no still block
    assert HDCZA().series_windows(np.full(n, 5.0), np.ones(n), clock(n), np.zeros(n)) == []


def test_a_mostly_not_worn_day_is_skipped() -> None:
    n = 2 * STEPS_PER_DAY
    day2 = STEPS_PER_DAY
    still = [(3000, 9000), (day2 + 3000, day2 + 9000)]
    not_worn = np.zeros(n)
    not_worn[day2 : day2 + int(0.6 * STEPS_PER_DAY)] = 1  # 60 % of day 2
    not_worn[: int(0.4 * STEPS_PER_DAY)] = 1  # 40 % of day 1: still worn enough
    windows = HDCZA().series_windows(moving_with_still(n, still), np.ones(n), clock(n), not_worn)
    assert [(w.onset, w.wakeup) for w in windows] == [(3000, 8999)]


def test_days_run_noon_to_noon_and_a_clock_set_back_is_no_new_day() -> None:
    seconds = clock(2 * STEPS_PER_DAY, start_seconds=15 * 3600)  # from 15:00
    first_noon = 21 * 720  # 21 h later
    assert day_bounds(seconds, 12) == [
        (0, first_noon),
        (first_noon, first_noon + STEPS_PER_DAY),
        (first_noon + STEPS_PER_DAY, 2 * STEPS_PER_DAY),
    ]
    dst = np.concatenate([clock(3000, 20 * 3600), clock(3000, 1 * 3600)])  # 00:10 -> 01:00
    assert day_bounds(dst, 12) == [(0, 6000)]


def test_prepared_inputs_are_the_raw_degrees_and_local_clock(synthetic_dir, tmp_path) -> None:
    from sleepdetect.data.io import read_series
    from sleepdetect.data.prepare import prepare

    cfg = load_config(PARAMS, [f"data.dir={synthetic_dir}", f"output.dir={tmp_path}"])
    manifest = prepare(cfg)
    sid = manifest.series[0].series_id
    absdiff, _, seconds, not_worn = prepared_inputs(manifest, sid)
    raw = read_series(synthetic_dir / "train_series.parquet", [sid])
    anglez = raw["anglez"].to_numpy()
    expected = np.abs(np.diff(anglez, prepend=anglez[:1]))
    np.testing.assert_allclose(absdiff, expected, atol=1e-4)
    assert np.array_equal(seconds, raw["seconds_of_day"].to_numpy())
    assert set(np.unique(not_worn)) <= {0.0, 1.0}


def test_infer_with_the_baseline_writes_a_scored_submission(synthetic_dir, tmp_path) -> None:
    from sleepdetect.stages.infer import infer

    cfg = load_config(PARAMS, [f"data.dir={synthetic_dir}", f"output.dir={tmp_path}"])
    submission = infer(cfg)
    out = submission.parent
    frame = pl.read_csv(submission)
    assert frame.columns == ["row_id", "series_id", "step", "event", "score"]
    assert set(frame["event"]) == {"onset", "wakeup"}
    assert frame["score"].is_between(0, 1, closed="right").all()
    events = pl.read_csv(synthetic_dir / "train_events.csv")
    assert set(frame["series_id"]) <= set(events["series_id"])
    record = json.loads((out / "submission.json").read_text())
    assert record["baseline"]["name"] == "hdcza"
    assert record["baseline"]["params"]["multiplier"] == 15.0
    assert record["bundles"] == []
    assert record["data"]["series"]["path"].endswith("train_series.parquet")
    metrics = pl.read_csv(out / "metrics.csv")
    score = metrics.filter(pl.col("event") == "score")["ap"][0]
    assert 0 < score <= 1


def test_the_pipeline_runs_no_training_for_a_baseline(tmp_path) -> None:
    from sleepdetect.pipeline import _without_training, stage_inputs

    cfg = load_config(PARAMS, [f"output.dir={tmp_path}"])
    assert _without_training(cfg, ["prepare", "train", "infer"]) == ["prepare", "infer"]
    assert not [k for k in stage_inputs(cfg, tmp_path, "infer") if k.startswith("bundle")]


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("infer.baseline_params={median_minute: 5}", "infer.baseline_params.median_minute"),
        ("infer.baseline_params={percentile: ten}", "infer.baseline_params.percentile"),
        ("infer.baseline_params={percentile: 150}", "infer.baseline_params.percentile"),
        ("infer.baseline_params={secondary: 1}", "infer.baseline_params.secondary"),
        ("infer.baseline_params={threshold_max: 0.1}", "infer.baseline_params.threshold_max"),
        ("infer.baseline=hdzca", "valid names: hdcza"),
        ("prepare.features=[anglez, enmo]", "prepare.features lacks"),
    ],
)
def test_bad_params_fail_before_any_stage_naming_the_key(tmp_path, override, named) -> None:
    from sleepdetect.pipeline import run_experiment

    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        run_experiment(PARAMS, [override, f"output.dir={tmp_path}"])
    assert not Experiment(tmp_path / "hdcza").prepared("train").exists()


def test_a_baseline_with_bundles_is_refused(tmp_path) -> None:
    from sleepdetect.stages.infer import infer

    cfg = load_config(PARAMS, ["infer.bundles=[outputs/demo/fold0]", f"output.dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"infer\.bundles is set"):
        infer(cfg)


def test_build_baseline_takes_ints_for_floats() -> None:
    assert build_baseline("hdcza", {"multiplier": 15}).multiplier == 15


def test_the_threshold_comes_from_worn_time_only() -> None:
    """A day with 8 h off the wrist lying still (no angle change at all): over the whole day
    the 10th percentile is 0 and the threshold falls to its floor (0.13), so a night of small
    movements (0.2 degrees) is not still; over worn time it is, as GGIR does it."""
    n = STEPS_PER_DAY
    absdiff = np.full(n, 5.0)
    absdiff[9000:15000] = 0.2  # the night: small movements
    absdiff[: 8 * 720] = 0.0  # 12:00-20:00 not worn, lying flat
    not_worn = np.zeros(n)
    not_worn[: 8 * 720] = 1
    hdcza = HDCZA(max_not_worn=0.5)
    movement = hdcza.movement(absdiff)
    assert hdcza.threshold(movement) == 0.13  # what the whole day would give
    windows = hdcza.series_windows(absdiff, np.ones(n), clock(n), not_worn)
    assert [(w.onset, w.wakeup) for w in windows] == [(9000, 14999)]
    rest = hdcza.rest_blocks(absdiff, clock(n), not_worn)
    assert [(a, b) for a, b, _ in rest] == [(9000, 15000)]  # not the flat not-worn block


def test_hdcza_agrees_with_skdh_on_the_real_nights(real_data_dir) -> None:
    """SKDH's own TSO window (an independent implementation) on the same 5-s angles of the
    real series, night by night: bench/hdcza_skdh.py prints the table."""
    table = compare(read_series(real_data_dir / "train_series.parquet"))
    diffs = np.abs(table.select("onset_diff_min", "wakeup_diff_min").to_numpy())
    assert len(table) >= 10
    assert np.median(diffs) <= 0.5  # minutes: the same steps, give or take one
    assert (diffs <= 5).mean() >= 0.9
