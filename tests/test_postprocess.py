"""Post-processing: the reference peak finding, the mass method, then each option on a
constructed score trace."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from sleepdetect.config import PostprocessConfig, load_config
from sleepdetect.core.constants import TOLERANCES
from sleepdetect.events.metric import event_detection_ap_table
from sleepdetect.events.postprocess import (
    STEPS_PER_DAY,
    candidate_mass,
    day_start_of,
    detect_events,
    mass_grid,
    minute_phase_of,
    series_candidates,
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
        ({"method": "dense"}, "method"),
        ({"method": "mass"}, "minute_phase"),
        ({"method": "mass", "minute_phase": 0, "peak_offsets": [12]}, "peak_offsets"),
        ({"method": "mass", "minute_phase": 0, "mass_max_per_day": 0}, "mass_max_per_day"),
        ({"day_start": [0, 1, 2]}, "day_start"),
        ({"edge_decay_steps": -1}, "edge_decay_steps"),
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


def test_onset_and_wakeup_day_windows_can_start_apart():
    # The same two peaks for both events; only the wakeups' boundary (7000) splits them.
    scores = trace({"onset": [(5000, 0.2), (9000, 0.1)], "wakeup": [(5000, 0.2), (9000, 0.1)]})
    out = detect_events(scores, "s", day_norm="max", day_start=[0, 7000])
    assert rows(out) == [
        (5000, "onset", 1.0),
        (5000, "wakeup", 1.0),
        (9000, "onset", 0.5),
        (9000, "wakeup", 1.0),
    ]


def test_config_day_start_hour_wakeup():
    # Step 0 at noon: onset windows from step 0 (12:00), wakeup ones from 14:00 (step 1440).
    scores = trace({"onset": [(1000, 0.2), (2000, 0.1)], "wakeup": [(1000, 0.2), (2000, 0.1)]})
    first = "2018-08-14T12:00:00-0400"
    same = series_candidates(scores, "s", first, PostprocessConfig(day_norm="max"))
    apart = series_candidates(
        scores, "s", first, PostprocessConfig(day_norm="max", day_start_hour_wakeup=14)
    )
    assert rows(same) == [
        (1000, "onset", 1.0),
        (1000, "wakeup", 1.0),
        (2000, "onset", 0.5),
        (2000, "wakeup", 0.5),
    ]
    assert rows(apart) == [
        (1000, "onset", 1.0),
        (1000, "wakeup", 1.0),
        (2000, "onset", 0.5),
        (2000, "wakeup", 1.0),
    ]


# ---------------------------------------------------------------- (e) series edges


def test_edge_decay_lowers_scores_near_the_end_only():
    scores = trace({"onset": [(1000, 0.9), (N - 500, 0.8)], "wakeup": [(N - 1440, 0.6)]})
    out = detect_events(scores, "s", edge_decay_steps=1440)
    # (N - step) / 1440: 500 steps from the end -> x 500/1440; 1440 from it -> x 1.
    assert rows(out) == [
        (1000, "onset", 0.9),
        (N - 1440, "wakeup", 0.6),
        (N - 500, "onset", round(0.8 * 500 / 1440, 6)),
    ]
    by_config = series_candidates(
        scores, "s", "2018-08-14T15:30:00-0400", PostprocessConfig(edge_decay_hours=2.0)
    )
    assert by_config.equals(out)
    # Next to the end a sliver is left (a peak needs a step after it: N - 2).
    last = detect_events(trace({"onset": [(N - 2, 0.9)]}, width=3.0), "s", edge_decay_steps=100)
    assert rows(last) == [(N - 2, "onset", round(0.9 * 2 / 100, 6))]


def test_early_wakeups_are_down_weighted():
    scores = trace({"onset": [(1000, 0.9)], "wakeup": [(1000, 0.8), (5000, 0.7)]})
    out = detect_events(scores, "s", start_wakeup_steps=4320, start_wakeup_factor=0.25)
    assert rows(out) == [(1000, "onset", 0.9), (1000, "wakeup", 0.2), (5000, "wakeup", 0.7)]
    cfg = PostprocessConfig(start_wakeup_hours=6.0, start_wakeup_factor=0.25)
    assert series_candidates(scores, "s", "2018-08-14T15:30:00-0400", cfg).equals(out)


# ---------------------------------------------------------------- the mass method


def brute_mass(trace_1d: np.ndarray, step: int, tolerances=TOLERANCES) -> float:
    """The mass of one candidate the slow way: every step, every tolerance."""
    distance = np.abs(np.arange(trace_1d.size) - step)
    return sum(float(trace_1d[distance < t].sum()) for t in tolerances)


def mass(scores: np.ndarray, **kw) -> pl.DataFrame:
    kw = {"method": "mass", "minute_phase": 0, "score_th": 0.0, **kw}
    return detect_events(scores, "s", **kw)


def test_mass_candidates_sit_on_seconds_15_and_45():
    rng = np.random.default_rng(0)
    scores = rng.random((4000, 2))
    for first in ("2018-08-14T15:30:00-0400", "2018-08-14T15:30:05-0400", "2018-08-14T15:30:35"):
        cfg = PostprocessConfig(method="mass", mass_max_per_day=200, score_th=0.0)
        out = series_candidates(scores, "s", first, cfg)
        assert out.height == 400
        seconds = (int(first[17:19]) + 5 * out["step"].to_numpy()) % 60
        assert set(seconds) == {15, 45}
    assert set(mass_grid(100, 0) % 12) == {3, 9}
    assert set(mass_grid(100, 11) % 12) == {2, 8}  # whole minutes at steps 11, 23, ...


def test_mass_equals_the_brute_force_sum_over_tolerances():
    rng = np.random.default_rng(1)
    p = rng.random(1500) ** 4
    steps = mass_grid(1500, 5)
    fast = candidate_mass(p, steps)
    assert np.allclose(fast, [brute_mass(p, s) for s in steps], rtol=1e-12)
    # Before any suppression the first pick is the best of them, scored with its mass.
    first = mass(np.stack([p, np.zeros(1500)], 1), minute_phase=5, mass_max_per_day=1)
    best = int(np.argmax(fast))
    assert rows(first) == [(steps[best], "onset", round(fast[best], 6))]


def test_greedy_update_equals_recomputing_the_mass_left():
    # The second and third picks, and their scores, from the mass left once the earlier picks
    # claimed everything within each tolerance of them, recomputed the slow way.
    rng = np.random.default_rng(2)
    p = rng.random(1500) ** 4
    out = mass(np.stack([p, np.zeros(1500)], 1), mass_max_per_day=3, steps_per_day=10**6)
    picks = out.sort("score", descending=True)
    order = picks["step"].to_list()
    steps = mass_grid(1500, 0)
    left = np.repeat(p[None, :], len(TOLERANCES), 0)
    for i in (1, 2):
        for k, t in enumerate(TOLERANCES):
            left[k, np.abs(np.arange(1500) - order[i - 1]) < t] = 0.0
        gains = np.array(
            [sum(brute_mass(left[k], s, [t]) for k, t in enumerate(TOLERANCES)) for s in steps]
        )
        gains[np.isin(steps, order[:i])] = -np.inf
        assert steps[int(np.argmax(gains))] == order[i]
        assert np.isclose(picks["score"][i], gains.max(), rtol=1e-9)


def test_a_single_bump_gets_its_top_candidate_next_to_it():
    scores = trace({"onset": [(5000, 0.9)]})
    out = mass(scores).sort("score", descending=True)
    # 5000 % 12 == 8: the nearest candidates are 4995 (:15) and 5001 (:45).
    assert out["step"][0] == 5001
    assert out["event"][0] == "onset"


@pytest.mark.parametrize("heights", [(0.9, 0.9), (1.0, 0.8)])
def test_two_nights_get_the_two_top_candidates(heights):
    # Without suppression the first bump's neighbour (6 steps on) would outrank a lower
    # second bump: the greedy claim leaves it little mass.
    second = 5000 + STEPS_PER_DAY + 100
    scores = trace({"onset": [(5000, heights[0]), (second, heights[1])]})
    out = mass(scores, score_th=1e-3).sort("score", descending=True)
    top = out["step"].to_list()[:2]
    assert abs(top[0] - 5000) <= 3 and abs(top[1] - second) <= 3
    assert out["score"][2] < 0.2 * out["score"][1]
    unsuppressed = candidate_mass(scores[:, 0], np.array([5001 + 6, top[1]]))
    if heights[1] < heights[0]:
        assert unsuppressed[0] > unsuppressed[1]  # the claim is what puts night 2 second


def test_mass_picks_per_day_are_capped():
    rng = np.random.default_rng(3)
    scores = rng.random((N, 2))
    out = mass(scores, mass_max_per_day=4, day_start=[0, 6000])
    day = (out["step"].to_numpy() - np.where(out["event"].to_numpy() == "onset", 0, 6000)) // (
        STEPS_PER_DAY
    )
    counts = pl.DataFrame({"event": out["event"], "day": day}).group_by("event", "day").len()
    assert counts["len"].max() == 4
    assert counts.filter(pl.col("event") == "onset").height == 3  # days 0, 1, 2
    assert counts.filter(pl.col("event") == "wakeup").height == 4  # days -1, 0, 1, 2


def test_mass_stops_below_score_th_and_other_options_still_apply():
    scores = trace({"onset": [(5000, 0.9), (5000 + STEPS_PER_DAY, 0.3)]})
    top = mass(scores, mass_max_per_day=1).sort("step")
    assert top.height == 2
    low = top["score"][1]
    assert mass(scores, mass_max_per_day=1, score_th=low * 1.01).height == 1
    normed = mass(scores, mass_max_per_day=1, day_norm="max")
    assert normed["score"].to_list() == [1.0, 1.0]
    mask = np.zeros(N, bool)
    mask[STEPS_PER_DAY:] = True
    assert mass(scores, mass_max_per_day=1, suppress_mask=mask).height == 1


# ---------------------------------------------------------------- config


def test_default_config_is_the_reference_peak_finding():
    scores = trace({"onset": [(1000, 0.9)], "wakeup": [(7003, 0.4)]})
    found = series_candidates(scores, "s", "2018-08-14T15:30:05-0400", PostprocessConfig())
    assert found.equals(detect_events(scores, "s"))


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
    scores = trace({"onset": [(1000, 0.9), (4000, 0.5)]}, width=3.0)
    out = series_candidates(scores, "s", "2018-08-14T15:30:05-0400", cfg)
    # 15:30:05 -> whole minutes at steps 11 + 12k; 18:00:00 is step (2.5 * 3600 - 5) / 5.
    expected = detect_events(
        scores, "s", minute_phase=11, peak_offsets=[-12, 12], day_norm="max", day_start=1799
    )
    assert out.equals(expected)
    assert out.height == 6 and out["score"].max() == 1.0
    assert set((out["step"].to_numpy() - 11 - 3) % 12) <= {0, 6}  # 3 steps off the grid
    # 1000 and 4000 fall on either side of 18:00, each the best of its window.
    assert out.filter(pl.col("step").is_in([998, 3998]))["score"].to_list() == [1.0, 1.0]


def test_mass_by_config_ignores_the_peak_options():
    rng = np.random.default_rng(4)
    scores = rng.random((20000, 2)) ** 8
    first = "2018-08-14T15:30:05-0400"
    plain = PostprocessConfig(method="mass", mass_max_per_day=5)
    with_peak_options = dataclasses.replace(
        plain, minute_snap=True, peak_offsets=[-36, 36], distance=500, offset_decay=0.9
    )
    out = series_candidates(scores, "s", first, plain)
    assert out.equals(series_candidates(scores, "s", first, with_peak_options))
    start = day_start_of(first)
    assert out.equals(
        mass(scores, minute_phase=11, mass_max_per_day=5, score_th=0.005, day_start=start)
    )


def test_a_config_field_that_reaches_no_argument_fails():
    @dataclasses.dataclass
    class WithNewOption(PostprocessConfig):
        smoothing_steps: int = 5

    with pytest.raises(TypeError, match="smoothing_steps"):
        series_candidates(np.zeros((100, 2)), "s", "2018-08-14T15:30:05", WithNewOption())


def test_series_candidates_follow_the_config():
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
