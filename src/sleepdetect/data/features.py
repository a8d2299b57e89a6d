"""Per-step features of one series, each registered under the name params use.

Plain names (`anglez`, `hour_sin`, `day_repeat`, ...) are features without arguments. Rolling
features take a centred window in steps after their name: `enmo_std_60` is the standard
deviation of enmo over 60 steps (5 minutes). Normalisation uses fixed constants, not statistics
of the data at hand, so train and test features mean the same thing; they are recorded in the
manifest beside the arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.ndimage import maximum_filter1d

from sleepdetect.core.constants import REFERENCE_FEATURES, STEPS_PER_DAY, STEPS_PER_MINUTE
from sleepdetect.core.registry import Registry, UnknownComponentError

FEATURES = Registry("feature")
MINUTES_PER_DAY = STEPS_PER_DAY // STEPS_PER_MINUTE

# Means and standard deviations over the full competition training set, as published with the
# reference solution; the anglez-diff scale is the std of step-to-step anglez changes in the
# real sample, the still_log ones the mean and std of other_days_still there. Fixed so that
# every run, train or test, normalises alike.
NORMALISATION = {
    "anglez_mean": -8.810476,
    "anglez_std": 35.521877,
    "enmo_mean": 0.041315,
    "enmo_std": 0.101829,
    "anglez_diff_std": 12.6,
    "still_log_mean": 1.55,
    "still_log_std": 0.57,
}

FULL_FEATURES = [
    *REFERENCE_FEATURES,
    "anglez_diff",
    "minute_of_day",
    "day_repeat",
    *[
        f"{signal}_{stat}_{window}"
        for signal in ("enmo", "anglez_absdiff")
        for stat in ("mean", "std", "max")
        for window in (12, 60, 360)
    ],
]


@dataclass(frozen=True)
class SeriesSignals:
    """What every feature may read: the raw signals of one series and its local clock."""

    anglez: np.ndarray  # (steps,) float32, degrees
    enmo: np.ndarray  # (steps,) float32, g
    seconds_of_day: np.ndarray  # (steps,) int32, local time

    @property
    def anglez_absdiff(self) -> np.ndarray:
        return np.abs(np.diff(self.anglez, prepend=self.anglez[:1]))


# ---------------------------------------------------------------- plain features


@FEATURES.register("anglez")
def anglez(s: SeriesSignals) -> np.ndarray:
    return (s.anglez - NORMALISATION["anglez_mean"]) / NORMALISATION["anglez_std"]


@FEATURES.register("enmo")
def enmo(s: SeriesSignals) -> np.ndarray:
    return (s.enmo - NORMALISATION["enmo_mean"]) / NORMALISATION["enmo_std"]


@FEATURES.register("hour_sin")
def hour_sin(s: SeriesSignals) -> np.ndarray:
    return np.sin(2 * np.pi * s.seconds_of_day / 86400)


@FEATURES.register("hour_cos")
def hour_cos(s: SeriesSignals) -> np.ndarray:
    return np.cos(2 * np.pi * s.seconds_of_day / 86400)


@FEATURES.register("minute_of_day")
def minute_of_day(s: SeriesSignals) -> np.ndarray:
    """Local time as a fraction of the day: lets a model learn habitual bed times directly."""
    return s.seconds_of_day / 86400


@FEATURES.register("anglez_diff")
def anglez_diff(s: SeriesSignals) -> np.ndarray:
    """Arm movement between steps; zero over long stretches is the signature of sleep."""
    return np.diff(s.anglez, prepend=s.anglez[:1]) / NORMALISATION["anglez_diff_std"]


@FEATURES.register("day_repeat")
def day_repeat(s: SeriesSignals, max_days: int = 3, min_run: int = 720) -> np.ndarray:
    """1 where the signal equals the same clock time on one of the `max_days` previous days.

    The competition data fill some non-wear periods with an exact copy of an earlier day; such
    days never hold events. Equal runs shorter than `min_run` steps (1 h) are chance.
    """
    n = len(s.anglez)
    flag = np.zeros(n, dtype=bool)
    for k in range(1, max_days + 1):
        lag = k * STEPS_PER_DAY
        if n <= lag:
            break
        flag[lag:] |= (s.anglez[lag:] == s.anglez[:-lag]) & (s.enmo[lag:] == s.enmo[:-lag])
    return _drop_short_runs(flag, min_run).astype(np.float32)


@FEATURES.register("other_days_still")
def other_days_still(s: SeriesSignals, window: int = 360) -> np.ndarray:
    """How still the arm is at this clock minute on the series' other days: the mean over
    those days of log(1 + the `window`-step mean of |anglez change|), copied days
    (`day_repeat`) left out. Context a one-day window cannot hold: the person's habitual sleep
    times, which tell lying awake in bed from sleep. No other day at that minute: the series'
    mean."""
    day = np.cumsum(np.diff(s.seconds_of_day, prepend=s.seconds_of_day[:1]) < 0)
    minute = s.seconds_of_day // 60
    cell = day * MINUTES_PER_DAY + minute  # one (day, clock minute) cell
    value = np.log1p(_rolling_mean(s.anglez_absdiff, window))
    weight = 1.0 - day_repeat(s)
    cell_sum = np.bincount(cell, weight * value)
    cell_count = np.bincount(cell, weight)
    minute_sum = np.bincount(minute, weight * value, MINUTES_PER_DAY)
    minute_count = np.bincount(minute, weight, MINUTES_PER_DAY)
    other_sum = minute_sum[minute] - cell_sum[cell]
    other_count = minute_count[minute] - cell_count[cell]
    fallback = np.sum(weight * value) / max(np.sum(weight), 1.0)
    out = np.where(other_count > 0, other_sum / np.maximum(other_count, 1e-9), fallback)
    return (out - NORMALISATION["still_log_mean"]) / NORMALISATION["still_log_std"]


def not_worn_of(series_df: pl.DataFrame, prepared: np.ndarray | None = None) -> np.ndarray:
    """Bool per step, True where the device was not worn: the prepared `day_repeat` feature
    when the series was prepared with it, else the same feature computed from the signals;
    and, in a series `convert` wrote, its `not_worn` column (the device's own detection)."""
    df = series_df.sort("step")
    if prepared is not None:
        flag = np.asarray(prepared) > 0.5
    else:
        signals = SeriesSignals(
            anglez=df["anglez"].to_numpy(),
            enmo=df["enmo"].to_numpy(),
            seconds_of_day=np.zeros(len(df), dtype=np.int32),  # day_repeat compares by lag only
        )
        flag = day_repeat(signals) > 0.5
    if "not_worn" in df.columns:
        flag = flag | df["not_worn"].to_numpy()
    return flag


def _drop_short_runs(flag: np.ndarray, min_run: int) -> np.ndarray:
    edges = np.diff(np.concatenate([[0], flag.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    keep = np.zeros(len(flag) + 1, dtype=np.int32)
    long_runs = (ends - starts) >= min_run
    np.add.at(keep, starts[long_runs], 1)
    np.add.at(keep, ends[long_runs], -1)
    return np.cumsum(keep[:-1]) > 0


# ---------------------------------------------------------------- rolling features


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over `window` steps; windows cut by the series' ends average what is left."""
    c = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    idx = np.arange(len(x))
    lo = np.clip(idx - window // 2, 0, len(x))
    hi = np.clip(idx - window // 2 + window, 0, len(x))
    return (c[hi] - c[lo]) / (hi - lo)


def _rolling_std(x: np.ndarray, window: int) -> np.ndarray:
    mean = _rolling_mean(x, window)
    mean_sq = _rolling_mean(np.square(x, dtype=np.float64), window)
    return np.sqrt(np.maximum(mean_sq - mean**2, 0.0))


def _rolling_max(x: np.ndarray, window: int) -> np.ndarray:
    return maximum_filter1d(x, size=window, mode="nearest")


_STATS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "mean": _rolling_mean,
    "std": _rolling_std,
    "max": _rolling_max,
}


def _register_rolling(signal: str, scale_key: str) -> None:
    for stat, fn in _STATS.items():

        def feature(s: SeriesSignals, window: int, _fn=fn) -> np.ndarray:
            return _fn(getattr(s, signal), window) / NORMALISATION[scale_key]

        feature.__doc__ = f"Centred rolling {stat} of {signal} over `window` steps."
        FEATURES.register(f"{signal}_{stat}")(feature)


_register_rolling("enmo", "enmo_std")
_register_rolling("anglez_absdiff", "anglez_diff_std")
ROLLING = {f"{signal}_{stat}" for signal in ("enmo", "anglez_absdiff") for stat in _STATS}


# ---------------------------------------------------------------- building


def resolve_feature(name: str) -> tuple[Callable[..., np.ndarray], dict[str, int]]:
    """`enmo_std_60` -> (the enmo_std function, {"window": 60}); unknown names list the valid."""
    base, _, suffix = name.rpartition("_")
    if base in ROLLING and suffix.isdigit() and int(suffix) >= 1:
        return FEATURES.get(base), {"window": int(suffix)}
    if name in FEATURES and name not in ROLLING:
        return FEATURES.get(name), {}
    plain = [n for n in FEATURES.names() if n not in ROLLING]
    rolling = [f"{n}_<window steps>" for n in sorted(ROLLING)]
    raise UnknownComponentError(
        f"unknown feature {name!r}; valid names: {', '.join(plain)}; rolling: "
        f"{', '.join(rolling)} (e.g. enmo_std_60)"
    )


def check_feature_names(names: list[str]) -> None:
    if not names:
        raise UnknownComponentError("prepare.features is empty; list at least one feature")
    for name in names:
        resolve_feature(name)
    if len(set(names)) != len(names):
        raise UnknownComponentError(f"prepare.features names a feature twice: {names}")


def build_features(signals: SeriesSignals, names: list[str]) -> np.ndarray:
    """(steps, len(names)) float32 array, columns in the order of `names`."""
    out = np.empty((len(signals.anglez), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        fn, kwargs = resolve_feature(name)
        out[:, j] = fn(signals, **kwargs)
    return out
