"""Features: values, names, and the day-repeat (non-wear) flag."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from sleepdetect.core.constants import STEP_SECONDS, STEPS_PER_DAY, STEPS_PER_HOUR
from sleepdetect.core.registry import UnknownComponentError
from sleepdetect.data.features import (
    FEATURES,
    FULL_FEATURES,
    NORMALISATION,
    REFERENCE_FEATURES,
    ROLLING,
    SeriesSignals,
    build_features,
    check_feature_names,
    not_worn_of,
    resolve_feature,
)


def signals(n: int, seed: int = 0) -> SeriesSignals:
    rng = np.random.default_rng(seed)
    return SeriesSignals(
        anglez=rng.uniform(-90, 90, n).astype(np.float32),
        enmo=rng.exponential(0.05, n).astype(np.float32),
        seconds_of_day=((np.arange(n) * 5 + 3600) % 86400).astype(np.int32),
    )


# Longer than a day, so features that compare days (day_repeat) run their comparison.
N_REGISTRY = STEPS_PER_DAY + 1001


@pytest.fixture(scope="module")
def registry_signals() -> SeriesSignals:
    return signals(N_REGISTRY)


def _registry_cases() -> list[str]:
    """Every registered name as params write it; rolling ones with a tiny and a usual window."""
    return [
        name
        for base in FEATURES.names()
        for name in ([f"{base}_1", f"{base}_60"] if base in ROLLING else [base])
    ]


@pytest.mark.parametrize("name", _registry_cases())
def test_every_registered_feature_gives_one_finite_value_per_step(name, registry_signals):
    """Every name in the registry (a newly registered feature is covered without an edit
    here): the function itself returns one finite float per step, and build_features makes
    it a finite float32 column."""
    fn, kwargs = resolve_feature(name)
    raw = np.asarray(fn(registry_signals, **kwargs))
    assert raw.shape == (N_REGISTRY,), f"{name}: shape {raw.shape}, not one value per step"
    assert np.issubdtype(raw.dtype, np.floating), f"{name}: dtype {raw.dtype}"
    assert np.isfinite(raw).all(), f"{name}: non-finite values"
    x = build_features(registry_signals, [name])
    assert x.shape == (N_REGISTRY, 1) and x.dtype == np.float32
    assert np.isfinite(x).all(), f"{name}: non-finite after the float32 cast"


def test_registry_cases_cover_every_registered_feature():
    covered = {resolve_feature(name)[0] for name in _registry_cases()}
    assert covered == {FEATURES.get(n) for n in FEATURES.names()}


def test_full_feature_list_builds_in_order():
    s = signals(3000)
    x = build_features(s, FULL_FEATURES)
    assert x.shape == (3000, len(FULL_FEATURES)) and x.dtype == np.float32
    for j, name in enumerate(FULL_FEATURES):
        np.testing.assert_array_equal(x[:, j], build_features(s, [name])[:, 0])


def test_reference_features_follow_the_fixed_constants():
    s = signals(100)
    x = build_features(s, REFERENCE_FEATURES)
    a = (s.anglez - NORMALISATION["anglez_mean"]) / NORMALISATION["anglez_std"]
    np.testing.assert_allclose(x[:, 0], a, rtol=1e-5)
    hours = s.seconds_of_day / 3600
    np.testing.assert_allclose(x[:, 2], np.sin(2 * np.pi * hours / 24), atol=1e-6)
    np.testing.assert_allclose(x[:, 3], np.cos(2 * np.pi * hours / 24), atol=1e-6)


@pytest.mark.parametrize("window", [1, 2, 5, 12])
@pytest.mark.parametrize("stat", ["mean", "std", "max"])
def test_rolling_features_equal_a_plain_window_loop(window, stat):
    s = signals(200, seed=window)
    got = build_features(s, [f"enmo_{stat}_{window}"])[:, 0] * NORMALISATION["enmo_std"]
    fn = {"mean": np.mean, "std": np.std, "max": np.max}[stat]
    expected = [
        fn(s.enmo[max(0, i - window // 2) : i - window // 2 + window].astype(np.float64))
        for i in range(200)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_anglez_absdiff_is_movement():
    s = SeriesSignals(
        anglez=np.array([0, 0, 10, 10, 4], np.float32),
        enmo=np.zeros(5, np.float32),
        seconds_of_day=np.zeros(5, np.int32),
    )
    got = build_features(s, ["anglez_absdiff_max_1", "anglez_diff"])
    np.testing.assert_allclose(got[:, 0] * NORMALISATION["anglez_diff_std"], [0, 0, 10, 0, 6])
    np.testing.assert_allclose(got[:, 1] * NORMALISATION["anglez_diff_std"], [0, 0, 10, 0, -6])


def test_day_repeat_flags_a_copied_day_only():
    n = 3 * STEPS_PER_DAY
    s = signals(n)
    anglez, enmo = s.anglez.copy(), s.enmo.copy()
    copy = slice(2 * STEPS_PER_DAY, 2 * STEPS_PER_DAY + 2000)  # 2000 steps copied from day 1
    anglez[copy] = anglez[STEPS_PER_DAY : STEPS_PER_DAY + 2000]
    enmo[copy] = enmo[STEPS_PER_DAY : STEPS_PER_DAY + 2000]
    # a short chance match (10 steps) must not count
    anglez[100_000:100_010] = anglez[100_000 - STEPS_PER_DAY : 100_010 - STEPS_PER_DAY]
    enmo[100_000:100_010] = enmo[100_000 - STEPS_PER_DAY : 100_010 - STEPS_PER_DAY]
    flag = build_features(SeriesSignals(anglez, enmo, s.seconds_of_day), ["day_repeat"])[:, 0]
    expected = np.zeros(n)
    expected[copy] = 1
    np.testing.assert_array_equal(flag, expected)


def test_unknown_feature_lists_valid_names():
    with pytest.raises(
        UnknownComponentError, match=r"unknown feature 'enmo_median_5'.*enmo_std_<window steps>"
    ):
        resolve_feature("enmo_median_5")
    with pytest.raises(UnknownComponentError, match="unknown feature 'enmo_std'"):
        resolve_feature("enmo_std")  # a rolling feature needs its window
    with pytest.raises(UnknownComponentError, match="twice"):
        check_feature_names(["anglez", "anglez"])
    with pytest.raises(UnknownComponentError, match="empty"):
        check_feature_names([])


def test_every_registered_feature_is_reachable_by_name():
    for name in FEATURES.names():
        fn, kwargs = resolve_feature(f"{name}_3" if name in ROLLING else name)
        assert fn is FEATURES.get(name)
        assert kwargs == ({"window": 3} if name in ROLLING else {})


def test_not_worn_joins_repeated_days_and_the_devices_own_column():
    n = 3 * STEPS_PER_DAY
    rng = np.random.default_rng(0)
    anglez = rng.normal(0, 20, n).astype(np.float32)
    anglez[2 * STEPS_PER_DAY :] = anglez[STEPS_PER_DAY : 2 * STEPS_PER_DAY]  # day 3 repeats day 2
    device = np.zeros(n, bool)
    device[1000:2000] = True  # what convert found
    df = pl.DataFrame({"step": np.arange(n), "anglez": anglez, "enmo": np.zeros(n, np.float32)})
    repeat = not_worn_of(df)
    assert repeat[2 * STEPS_PER_DAY :].all() and not repeat[1000:2000].any()
    both = not_worn_of(df.with_columns(pl.Series("not_worn", device)))
    assert both[1000:2000].all() and both[2 * STEPS_PER_DAY :].all()
    assert both.sum() == repeat.sum() + 1000


def _days(pattern: list[np.ndarray], seed: int = 0) -> SeriesSignals:
    """Whole days from midnight, each a (steps,) bool mask: masked steps hold the arm still,
    the others move it at random."""
    rng = np.random.default_rng(seed)
    still = np.concatenate(pattern)
    moves = np.where(still, 0.0, rng.uniform(-40, 40, len(still)))
    return SeriesSignals(
        anglez=(np.cumsum(moves) % 90).astype(np.float32),
        enmo=rng.exponential(0.05, len(still)).astype(np.float32),
        seconds_of_day=((np.arange(len(still)) * STEP_SECONDS) % 86400).astype(np.int32),
    )


def _still(start_h: float, end_h: float) -> np.ndarray:
    hours = np.arange(STEPS_PER_DAY) / STEPS_PER_HOUR
    return (hours >= start_h) & (hours < end_h)


def _at(day: int, hour: float) -> int:
    return day * STEPS_PER_DAY + int(hour * STEPS_PER_HOUR)


def _other_days(s: SeriesSignals) -> np.ndarray:
    return build_features(s, ["other_days_still"])[:, 0]


NIGHT, AWAKE = _still(1, 7), _still(0, 0)
MIDDAYS = slice(_at(0, 0.5), _at(0, 23.5))  # day 0 away from the edges rolling windows cross


def test_other_days_still_is_the_habit_of_the_other_days_at_that_clock_time():
    """Two nights still 01:00-07:00, then a day awake throughout: on the awake day the
    feature still shows the habitual night, and a day's own movements never count."""
    s = _days([NIGHT, NIGHT, AWAKE])
    x = _other_days(s)
    assert x[_at(2, 4)] < x[_at(2, 12)] - 1.0  # the awake day sees the usual night at 04:00
    assert x[_at(0, 4)] > x[_at(2, 4)] + 0.5  # day 0 sees one still and one awake night

    other = _days([NIGHT, NIGHT, AWAKE], seed=1)  # day 0 moves differently
    anglez = np.concatenate([other.anglez[:STEPS_PER_DAY], s.anglez[STEPS_PER_DAY:]])
    y = _other_days(replace(s, anglez=anglez))
    np.testing.assert_allclose(y[MIDDAYS], x[MIDDAYS], rtol=1e-6)
    assert not np.allclose(y[_at(1, 12) : _at(1, 13)], x[_at(1, 12) : _at(1, 13)])


def test_other_days_still_leaves_copied_days_out():
    """A day that copies an earlier one (the competition's non-wear filler) is no habit."""
    s = _days([NIGHT, AWAKE, NIGHT])
    copied = replace(
        s,
        anglez=np.concatenate([s.anglez, s.anglez[STEPS_PER_DAY : 2 * STEPS_PER_DAY]]),
        enmo=np.concatenate([s.enmo, s.enmo[STEPS_PER_DAY : 2 * STEPS_PER_DAY]]),
        seconds_of_day=np.tile(s.seconds_of_day[:STEPS_PER_DAY], 4),
    )
    np.testing.assert_allclose(_other_days(copied)[MIDDAYS], _other_days(s)[MIDDAYS], rtol=1e-6)


def test_other_days_still_of_a_single_day_is_its_mean():
    x = _other_days(_days([NIGHT]))
    assert np.ptp(x) == 0 and np.isfinite(x).all()
