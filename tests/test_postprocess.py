"""Post-processing: the reference peak finding, then each option on a constructed score trace."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sleepdetect.config import PostprocessConfig, load_config
from sleepdetect.metric import event_detection_ap_table
from sleepdetect.postprocess import (
    STEPS_PER_DAY,
    day_start_of,
    detect_events,
    detect_kwargs,
    minute_phase_of,
)

N = 3 * STEPS_PER_DAY


def trace(peaks: dict[str, list[tuple[int, float]]], n: int = N, width: float = 30.0) -> np.ndarray:
    """(n, 2) scores: a Gaussian bump of the given height at each (step, height)."""
    x = np.arange(n)
    out = np.zeros((n, 2))
    for col, name in enumerate(("onset", "wakeup")):
        for step, height in peaks.get(name, []):
            out[:, col] = np.maximum(out[:, col], height * np.exp(-0.5 * ((x - step) / width) ** 2))
    return out


def rows(df: pl.DataFrame) -> list[tuple]:
    return [(r["step"], r["event"], round(r["score"], 6)) for r in df.iter_rows(named=True)]


def ap_at(candidates: pl.DataFrame, labels: list[tuple[str, int]], tol: int) -> float:
    sol = pl.DataFrame(
        {"series_id": "s", "event": [e for e, _ in labels], "step": [s for _, s in labels]}
    )
    table, _ = event_detection_ap_table(sol, candidates, tolerances=[tol])
    return table["ap"].mean()


# ---------------------------------------------------------------- reference


def test_peaks_above_threshold_at_least_distance_apart():
    scores = trace(
        {
            "onset": [(1000, 0.9), (1030, 0.5), (5000, 0.004), (9000, 0.3)],
            "wakeup": [(20000, 0.7)],
        },
        width=3.0,
    )
    out = detect_events(scores, "s", score_th=0.005, distance=40)
    assert out.columns == ["series_id", "step", "event", "score"]
    assert out.schema["step"] == pl.Int64 and out.schema["score"] == pl.Float64
    # 1030 is within 40 steps of the higher 1000; 5000 is below score_th.
    assert rows(out) == [(1000, "onset", 0.9), (9000, "onset", 0.3), (20000, "wakeup", 0.7)]
    assert out["series_id"].unique().to_list() == ["s"]
    # A shorter distance keeps the second peak.
    assert 1030 in detect_events(scores, "s", score_th=0.005, distance=10)["step"].to_list()


def test_flat_or_nan_scores_give_an_empty_frame_with_the_schema():
    scores = np.zeros((500, 2))
    scores[10:20] = np.nan
    out = detect_events(scores, "s")
    assert out.height == 0
    assert out.schema == {
        "series_id": pl.String,
        "step": pl.Int64,
        "event": pl.String,
        "score": pl.Float64,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"distance": 0}, "distance"),
        ({"day_norm": "mean"}, "day_norm"),
        ({"minute_phase": 0, "minute_shift": 12}, "minute_shift"),
        ({"suppress_mask": np.zeros(5, bool)}, "suppress_mask"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        detect_events(np.zeros((100, 2)), "s", **kwargs)


def test_scores_must_have_one_column_per_event():
    with pytest.raises(ValueError, match="shape"):
        detect_events(np.zeros(100), "s")


# ---------------------------------------------------------------- (a) the minute grid


def test_minute_phase_from_the_first_timestamp():
    assert minute_phase_of("2018-08-14T15:30:00-0400") == 0
    assert minute_phase_of("2018-08-14T15:30:05-0400") == 11  # step 11 is 15:31:00
    assert minute_phase_of("2018-08-14T15:30:55-0400") == 1


def test_real_labels_sit_on_the_minute_grid(real_data_dir):
    first = pl.read_parquet(real_data_dir / "train_series.parquet", n_rows=1)["timestamp"][0]
    steps = pl.read_csv(real_data_dir / "train_events.csv")["step"].drop_nulls().to_numpy()
    assert set((steps - minute_phase_of(first)) % 12) == {0}


def test_candidates_move_off_the_grid_towards_the_peak():
    scores = trace({"onset": [(1000, 0.9), (2007, 0.8), (3012, 0.7)]}, width=3.0)
    plain = detect_events(scores, "s")["step"].to_list()
    snapped = detect_events(scores, "s", minute_phase=0, minute_shift=3)["step"].to_list()
    assert plain == [1000, 2007, 3012]
    # 1000 -> grid 996 (+3, peak is later); 2007 -> grid 2004, +3; 3012 on the grid: +3.
    assert snapped == [999, 2007, 3015]
    # With a phase of 4 (first timestamp at :40): grid 1000 -> 1003.
    assert detect_events(scores, "s", minute_phase=4)["step"].to_list()[0] == 1003


def test_off_grid_candidate_hits_a_label_the_grid_one_misses():
    # A peak on the grid at 1008; the label one tolerance-width later, at 1044. On the grid the
    # candidate is 36 away (a miss at 36); 3 steps off it is 33 away (a hit).
    scores = trace({"onset": [(1008, 0.9)]}, width=3.0)
    on_grid = detect_events(scores, "s")
    off_grid = detect_events(scores, "s", minute_phase=0, minute_shift=3)
    labels = [("onset", 1044)]
    assert ap_at(on_grid, labels, 36) == 0.0
    assert ap_at(off_grid, labels, 36) == 1.0


# ---------------------------------------------------------------- (b) several candidates per peak


def test_extra_candidates_at_offsets_with_decayed_scores():
    scores = trace({"onset": [(5000, 0.8)]}, width=3.0)
    out = detect_events(scores, "s", peak_offsets=[-24, 24, 60], offset_decay=0.5)
    # 0.8 x 0.5 ** (|offset| / 12)
    assert rows(out) == [
        (4976, "onset", 0.2),
        (5000, "onset", 0.8),
        (5024, "onset", 0.2),
        (5060, "onset", 0.025),
    ]


def test_extra_candidate_recovers_a_label_the_peak_misses():
    scores = trace({"onset": [(5000, 0.8)]}, width=3.0)
    labels = [("onset", 5030)]
    assert ap_at(detect_events(scores, "s"), labels, 12) == 0.0
    assert ap_at(detect_events(scores, "s", peak_offsets=[-24, 24]), labels, 12) > 0.0


def test_extra_candidates_stay_inside_the_series_and_one_per_step():
    scores = trace({"onset": [(10, 0.8), (60, 0.6)]}, n=100, width=2.0)
    out = detect_events(scores, "s", distance=20, peak_offsets=[-50, 50])
    steps = out["step"].to_list()
    assert all(0 <= s < 100 for s in steps)
    # 10 + 50 == 60: the peak (0.6) beats the extra (0.8 x 0.5 ** (50 / 12)) at that step.
    assert steps == [10, 60] and rows(out)[1][2] == 0.6


# ---------------------------------------------------------------- (c) per-day normalisation


def test_day_start_from_the_first_timestamp():
    assert day_start_of("2018-08-14T12:00:00-0400") == 0
    assert day_start_of("2018-08-14T11:59:55-0400") == 1
    assert day_start_of("2018-08-14T15:30:00-0400") == STEPS_PER_DAY - 3.5 * 720
    assert day_start_of("2018-08-14T15:30:00-0400", hour=18) == 2.5 * 720


def test_max_normalisation_makes_every_night_peak_one():
    # Night 1: a timid model (0.2 and 0.1); night 2: a confident one (0.8). Day windows from 0.
    scores = trace({"onset": [(5000, 0.2), (9000, 0.1), (5000 + STEPS_PER_DAY, 0.8)]}, width=3.0)
    out = detect_events(scores, "s", day_norm="max", day_start=0)
    assert rows(out) == [(5000, "onset", 1.0), (9000, "onset", 0.5), (22280, "onset", 1.0)]


def test_sum_normalisation_gives_each_candidate_its_share_of_the_day():
    scores = trace({"onset": [(5000, 0.3), (9000, 0.1)], "wakeup": [(12000, 0.4)]}, width=3.0)
    out = detect_events(scores, "s", day_norm="sum", day_start=0)
    assert rows(out) == [(5000, "onset", 0.75), (9000, "onset", 0.25), (12000, "wakeup", 1.0)]


def test_day_windows_start_at_day_start():
    scores = trace({"onset": [(5000, 0.2), (9000, 0.1)]}, width=3.0)
    # A boundary at 7000 puts the two peaks in different windows: each becomes 1.
    out = detect_events(scores, "s", day_norm="max", day_start=7000)
    assert out["score"].to_list() == [1.0, 1.0]


def test_normalisation_lets_a_timid_series_rank_with_a_confident_one():
    # Two series, two nights each; each night has its true peak and a lower false one. Raw
    # scores rank series b's true peaks (0.1) below series a's false ones (0.3): after per-day
    # max normalisation all four true peaks rank first and AP is 1.
    true_steps = [5000, 5000 + STEPS_PER_DAY]
    a = trace({"onset": [(s, 0.9) for s in true_steps] + [(s + 3000, 0.3) for s in true_steps]})
    b = trace({"onset": [(s, 0.1) for s in true_steps] + [(s + 3000, 0.05) for s in true_steps]})
    sol = pl.DataFrame(
        {"series_id": ["a", "a", "b", "b"], "event": "onset", "step": true_steps * 2}
    )

    def score(**kw):
        sub = pl.concat([detect_events(a, "a", **kw), detect_events(b, "b", **kw)])
        return event_detection_ap_table(sol, sub, tolerances=[12])[1]

    assert score() < 0.9
    assert score(day_norm="max", day_start=0) == 1.0


# ---------------------------------------------------------------- (d) repeated days


def test_candidates_inside_repeated_days_are_removed_or_down_weighted():
    scores = trace({"onset": [(5000, 0.8), (5000 + STEPS_PER_DAY, 0.6)]}, width=3.0)
    mask = np.zeros(N, bool)
    mask[STEPS_PER_DAY : 2 * STEPS_PER_DAY] = True  # day 2 repeats day 1
    removed = detect_events(scores, "s", suppress_mask=mask)
    assert rows(removed) == [(5000, "onset", 0.8)]
    halved = detect_events(scores, "s", suppress_mask=mask, suppress_factor=0.5)
    assert rows(halved) == [(5000, "onset", 0.8), (22280, "onset", 0.3)]


def test_suppression_comes_after_normalisation():
    # Max normalisation would lift the repeated day's peak back to 1 if applied afterwards.
    scores = trace({"onset": [(5000, 0.8), (5000 + STEPS_PER_DAY, 0.6)]}, width=3.0)
    mask = np.zeros(N, bool)
    mask[STEPS_PER_DAY : 2 * STEPS_PER_DAY] = True
    out = detect_events(
        scores, "s", day_norm="max", day_start=0, suppress_mask=mask, suppress_factor=0.1
    )
    assert rows(out) == [(5000, "onset", 1.0), (22280, "onset", 0.1)]


# ---------------------------------------------------------------- config


def test_default_config_is_the_reference_peak_finding():
    scores = trace({"onset": [(1000, 0.9)], "wakeup": [(7003, 0.4)]})
    kwargs = detect_kwargs(PostprocessConfig(), "2018-08-14T15:30:05-0400")
    assert detect_events(scores, "s", **kwargs).equals(detect_events(scores, "s"))


def test_config_options_reach_detect_events():
    cfg = load_config(
        None,
        [
            "postprocess.minute_snap=true",
            "postprocess.peak_offsets=[-12,12]",
            "postprocess.day_norm=max",
            "postprocess.day_start_hour=18",
        ],
    ).postprocess
    kwargs = detect_kwargs(cfg, "2018-08-14T15:30:05-0400")
    assert kwargs["minute_phase"] == 11
    assert kwargs["peak_offsets"] == [-12, 12]
    assert kwargs["day_norm"] == "max"
    assert kwargs["day_start"] == (2.5 * 3600 - 5) / 5
    out = detect_events(trace({"onset": [(1000, 0.9)]}, width=3.0), "s", **kwargs)
    assert out.height == 3 and out["score"].max() == 1.0
    assert set((out["step"].to_numpy() - 11 - 3) % 12) <= {0, 6}  # 3 steps off the grid


def test_series_candidates_follow_the_config():
    from sleepdetect.postprocess import series_candidates

    scores = np.zeros((3000, 2))
    scores[1000, 0] = scores[2000, 1] = 0.9
    first = "2018-08-14T15:30:00-0400"
    found = series_candidates(scores, "s", first, PostprocessConfig())
    assert found["step"].to_list() == [1000, 2000]
    repeat = np.zeros(3000)
    repeat[1500:] = 1  # the second half repeats an earlier day
    cfg = PostprocessConfig(suppress_repeated=True)
    assert series_candidates(scores, "s", first, cfg, repeat)["step"].to_list() == [1000]
    with pytest.raises(ValueError, match="needs the day_repeat feature"):
        series_candidates(scores, "s", first, cfg)
