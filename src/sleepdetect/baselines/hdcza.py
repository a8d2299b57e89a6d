"""HDCZA: the sleep-period-time window heuristic of van Hees et al. (2018), as in GGIR.

A baseline that needs no training: per noon-to-noon day it finds the longest stretch in
which the arm angle hardly changes and calls its start the onset and its end the wakeup.
The parameters are GGIR's published defaults, so a score of it on labelled nights is not
chosen on those nights. It reads its inputs from the prepared arrays (never from the series
file again), so a stale prepared folder is refused or rebuilt by the same checks as for a
model (see inference.infer).

A baseline is one class registered in BASELINES by the name `infer.baseline` uses; its
constructor arguments are `infer.baseline_params`, and it declares the prepared `features`
it reads and a one-line `summary` (`python -m sleepdetect models` lists both).
`build_baseline` turns a name and params into an instance, or a ConfigError naming the key.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.ndimage import median_filter

from sleepdetect.config import ConfigError
from sleepdetect.core.constants import STEP_SECONDS, STEPS_PER_DAY, STEPS_PER_HOUR, STEPS_PER_MINUTE
from sleepdetect.core.registry import Registry, UnknownComponentError
from sleepdetect.data.prepare import Manifest
from sleepdetect.events.postprocess import SCHEMA

BASELINES = Registry("baseline")

_DAY_SECONDS = 86400


@dataclass(frozen=True)
class SleepWindow:
    """One detected sleep period of a day: steps [onset, wakeup] (both inside it), by
    which rule (`hdcza`, `fallback`, or `secondary` for the second-longest block)."""

    onset: int
    wakeup: int
    score: float
    kind: str


@BASELINES.register("hdcza")
class HDCZA:
    """Heuristic algorithm looking at Distribution of Change in Z-Angle (van Hees et al. 2018,
    GGIR's default sleep-period-time guider). Per noon-to-noon day of local time:

    1. |change of anglez| between 5-s steps (our steps are GGIR's 5-s epochs already), then
       its centred rolling median over `median_minutes` (an odd number of steps: 61);
    2. threshold = the day's `percentile`-th percentile of that series x `multiplier`, clipped
       to [threshold_min, threshold_max] degrees;
    3. still blocks: runs below the threshold longer than `min_block_minutes`; gaps shorter
       than `max_gap_minutes` between two blocks are filled; the longest resulting block is
       the sleep period (onset = its first step, wakeup = its last step);
    4. no block: GGIR falls back on a `fallback_window_hours` window centred on the least
       active `fallback_l5_hours` consecutive hours of the day (lowest mean ENMO, the L5).

    Days that the `day_repeat` feature marks as not worn for more than `max_not_worn` of
    their steps are skipped (such days hold no events). A window's score is the share of its
    steps below the threshold x its length / 24 h, in (0, 1]: long, still nights rank first
    across nights and series. With `secondary`, the edges of the second-longest block also
    become candidates, scored x `secondary_factor` (AP never loses by extra guesses ranked
    below the others).
    """

    summary = "GGIR's sleep-period guider: the longest still block of each day (params/hdcza.yaml)"
    # the prepared columns it reads: anglez changes (exact, unlike the standardised anglez),
    # ENMO (for L5; an affine rescaling keeps the least active hours), the local clock, non-wear
    features = ("anglez_diff", "enmo", "minute_of_day", "day_repeat")

    def __init__(
        self,
        median_minutes: float = 5.0,
        percentile: float = 10.0,
        multiplier: float = 15.0,
        threshold_min: float = 0.13,
        threshold_max: float = 0.50,
        min_block_minutes: float = 30.0,
        max_gap_minutes: float = 60.0,
        day_start_hour: int = 12,
        fallback_l5_hours: float = 5.0,
        fallback_window_hours: float = 12.0,
        max_not_worn: float = 0.5,
        secondary: bool = False,
        secondary_factor: float = 0.1,
    ) -> None:
        self.params = {k: v for k, v in locals().items() if k != "self"}  # for its record
        _check("median_minutes", median_minutes, median_minutes > 0, "a positive duration")
        _check("percentile", percentile, 0 <= percentile <= 100, "from 0 to 100")
        _check("multiplier", multiplier, multiplier > 0, "positive")
        _check("threshold_min", threshold_min, threshold_min >= 0, "degrees, >= 0")
        _check(
            "threshold_max",
            threshold_max,
            threshold_max >= threshold_min,
            f"degrees, >= threshold_min ({threshold_min})",
        )
        _check("min_block_minutes", min_block_minutes, min_block_minutes >= 0, ">= 0")
        _check("max_gap_minutes", max_gap_minutes, max_gap_minutes >= 0, ">= 0")
        _check("day_start_hour", day_start_hour, 0 <= day_start_hour <= 23, "an hour, 0..23")
        _check("fallback_l5_hours", fallback_l5_hours, 0 < fallback_l5_hours <= 24, "0..24 h")
        _check(
            "fallback_window_hours",
            fallback_window_hours,
            fallback_l5_hours <= fallback_window_hours <= 24,
            f"from fallback_l5_hours ({fallback_l5_hours}) to 24 h",
        )
        _check("max_not_worn", max_not_worn, 0 <= max_not_worn <= 1, "a share, 0..1")
        _check("secondary_factor", secondary_factor, 0 < secondary_factor <= 1, "in (0, 1]")
        self.median_steps = 2 * round(median_minutes * STEPS_PER_MINUTE / 2) + 1  # odd: centred
        self.percentile = percentile
        self.multiplier = multiplier
        self.threshold_min = threshold_min
        self.threshold_max = threshold_max
        self.min_block = round(min_block_minutes * STEPS_PER_MINUTE)
        self.max_gap = round(max_gap_minutes * STEPS_PER_MINUTE)
        self.day_start_hour = day_start_hour
        self.l5_steps = round(fallback_l5_hours * STEPS_PER_HOUR)
        self.fallback_steps = round(fallback_window_hours * STEPS_PER_HOUR)
        self.max_not_worn = max_not_worn
        self.secondary = secondary
        self.secondary_factor = secondary_factor

    # ------------------------------------------------------------ the algorithm on arrays

    def movement(self, absdiff: np.ndarray) -> np.ndarray:
        """(steps,) centred rolling median of |anglez change| (degrees): step 1 of HDCZA."""
        return median_filter(
            np.asarray(absdiff, np.float64), size=self.median_steps, mode="nearest"
        )

    def threshold(self, movement: np.ndarray) -> float:
        """The day's stillness threshold in degrees: step 2 of HDCZA."""
        raw = float(np.percentile(movement, self.percentile)) * self.multiplier
        return float(np.clip(raw, self.threshold_min, self.threshold_max))

    def still(self, movement: np.ndarray, worn: np.ndarray) -> np.ndarray:
        """Steps below the day's threshold, its percentile taken over worn steps only, as
        GGIR does: a device lying still off the wrist for hours would pull it to 0."""
        if not worn.any():
            return np.zeros(len(movement), dtype=bool)
        return movement < self.threshold(movement[worn])

    def blocks(self, still: np.ndarray) -> list[tuple[int, int]]:
        """Still blocks [start, stop) after the length rule and gap filling: step 3, longest
        first (ties: the earlier)."""
        edges = np.diff(np.concatenate([[0], still.astype(np.int8), [0]]))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        long = (stops - starts) > self.min_block
        merged: list[list[int]] = []
        for a, b in zip(starts[long].tolist(), stops[long].tolist(), strict=True):
            if merged and a - merged[-1][1] < self.max_gap:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        return sorted(((a, b) for a, b in merged), key=lambda ab: (-(ab[1] - ab[0]), ab[0]))

    def day_windows(
        self, movement: np.ndarray, activity: np.ndarray, not_worn: np.ndarray
    ) -> list[SleepWindow]:
        """The windows of one day (steps relative to its first step); [] for a not-worn day."""
        n = len(movement)
        if n == 0 or float(np.mean(not_worn)) > self.max_not_worn:
            return []
        still = self.still(movement, np.asarray(not_worn) < 0.5)
        found = self.blocks(still)
        if not found:
            window = self._fallback(activity)
            return [] if window is None else [self._window(still, *window, "fallback", 1.0)]
        out = [self._window(still, *found[0], "hdcza", 1.0)]
        if self.secondary and len(found) > 1:
            out.append(self._window(still, *found[1], "secondary", self.secondary_factor))
        return out

    def _fallback(self, activity: np.ndarray) -> tuple[int, int] | None:
        """GGIR's fallback: `fallback_window_hours` centred on the least active
        `fallback_l5_hours` (L5) of the day, clipped to it; None when the day is shorter."""
        n, k = len(activity), self.l5_steps
        if n < k:
            return None
        sums = np.convolve(np.asarray(activity, np.float64), np.ones(k), mode="valid")
        mid = int(np.argmin(sums)) + k // 2
        start = max(mid - self.fallback_steps // 2, 0)
        return start, min(start + self.fallback_steps, n)

    def _window(self, still: np.ndarray, start: int, stop: int, kind: str, factor: float):
        share = float(still[start:stop].mean())
        score = factor * max(share, 1e-3) * min((stop - start) / STEPS_PER_DAY, 1.0)
        return SleepWindow(onset=start, wakeup=stop - 1, score=score, kind=kind)

    def series_windows(
        self,
        absdiff: np.ndarray,
        activity: np.ndarray,
        seconds_of_day: np.ndarray,
        not_worn: np.ndarray,
    ) -> list[SleepWindow]:
        """Every day's windows of one series, steps from its step 0. `absdiff`: |anglez
        change| in degrees; `activity`: ENMO (any affine scale); `seconds_of_day`: local
        clock; `not_worn`: 1 where not worn."""
        movement = self.movement(absdiff)
        out = []
        for lo, hi in day_bounds(seconds_of_day, self.day_start_hour):
            for w in self.day_windows(movement[lo:hi], activity[lo:hi], not_worn[lo:hi]):
                out.append(SleepWindow(w.onset + lo, w.wakeup + lo, w.score, w.kind))
        return out

    def rest_blocks(
        self, absdiff: np.ndarray, seconds_of_day: np.ndarray, not_worn: np.ndarray
    ) -> list[tuple[int, int, float]]:
        """Every still block in worn time of every day, [start, stop) from step 0 with its
        window score: the report's naps and second sleeps."""
        movement = self.movement(absdiff)
        out = []
        for lo, hi in day_bounds(seconds_of_day, self.day_start_hour):
            worn = np.asarray(not_worn[lo:hi]) < 0.5
            still = self.still(movement[lo:hi], worn) & worn
            for a, b in self.blocks(still):
                out.append((a + lo, b + lo, self._window(still, a, b, "rest", 1.0).score))
        return out

    # ------------------------------------------------------------ prepared series -> candidates

    def candidates(self, manifest: Manifest, series_id: str) -> pl.DataFrame:
        """Scored candidates (series_id, step, event, score) of one prepared series."""
        windows = self.series_windows(*prepared_inputs(manifest, series_id))
        return pl.DataFrame(
            {
                "series_id": [series_id] * (2 * len(windows)),
                "step": [s for w in windows for s in (w.onset, w.wakeup)],
                "event": ["onset", "wakeup"] * len(windows),
                "score": [w.score for w in windows for _ in range(2)],
            },
            schema=SCHEMA,
        )


def candidate_trace(candidates: pl.DataFrame, n_steps: int) -> np.ndarray:
    """(steps, 2) onset/wakeup scores that are each candidate's score at its step and 0
    elsewhere: a baseline's per-step scores, for the plots that picture a model's."""
    trace = np.zeros((n_steps, 2), np.float32)
    for column, event in enumerate(("onset", "wakeup")):
        rows = candidates.filter(pl.col("event") == event)
        np.maximum.at(trace[:, column], rows["step"].to_numpy(), rows["score"].to_numpy())
    return trace


def day_bounds(seconds_of_day: np.ndarray, day_start_hour: int) -> list[tuple[int, int]]:
    """[lo, hi) of each day from local `day_start_hour` to the next (the first and last may be
    partial). A new day starts where the local time since that hour wraps around; the hour a
    daylight-saving switch moves the clock back is not a wrap."""
    since = (np.asarray(seconds_of_day, np.int64) - day_start_hour * 3600) % _DAY_SECONDS
    wraps = np.flatnonzero(np.diff(since) < -_DAY_SECONDS // 2) + 1
    edges = [0, *wraps.tolist(), len(since)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def prepared_inputs(
    manifest: Manifest, series_id: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(|anglez change| in degrees, enmo as prepared, local seconds of day, not worn) of one
    series, from the prepared columns HDCZA.features names and the manifest's constants."""
    missing = [f for f in HDCZA.features if f not in manifest.feature_names]
    if missing:
        raise ConfigError(
            f"{manifest.root}: prepared without {missing}, which infer.baseline=hdcza reads; "
            f"add {list(HDCZA.features)} to prepare.features (params/hdcza.yaml has them)"
        )
    cols = manifest.features(series_id)
    names = manifest.feature_names
    scale = manifest.normalisation["anglez_diff_std"]
    absdiff = np.abs(cols[:, names.index("anglez_diff")].astype(np.float64)) * scale
    seconds = np.rint(cols[:, names.index("minute_of_day")] * (_DAY_SECONDS / STEP_SECONDS))
    seconds = seconds.astype(np.int64) * STEP_SECONDS
    enmo = np.asarray(cols[:, names.index("enmo")], np.float64)
    not_worn = np.asarray(cols[:, names.index("day_repeat")] > 0.5, np.float64)
    return absdiff, enmo, seconds, not_worn


def _check(name: str, value: Any, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r}: must be {what}")


def build_baseline(name: str, params: dict[str, Any]) -> Any:
    """The baseline registered as `name`, built with `params`; a ConfigError naming
    `infer.baseline` or the `infer.baseline_params` key otherwise."""
    try:
        cls = BASELINES.get(name)
    except UnknownComponentError as e:
        raise ConfigError(f"infer.baseline: {e}") from e
    signature = inspect.signature(cls.__init__)
    valid = [p for p in signature.parameters if p != "self"]
    for key, value in params.items():
        if key not in valid:
            raise ConfigError(
                f"infer.baseline_params.{key}: unknown parameter of {name}; valid: "
                f"{', '.join(valid)}"
            )
        default = signature.parameters[key].default
        if not _same_kind(value, default):
            raise ConfigError(
                f"infer.baseline_params.{key}: must be {type(default).__name__} "
                f"(default {default!r}), got {type(value).__name__} {value!r}"
            )
    try:
        return cls(**params)
    except ValueError as e:
        raise ConfigError(f"infer.baseline_params.{e}") from e


def features_for(name: str, baseline: Any, features: list[str]) -> list[str]:
    """`features` (prepare.features), so that 03_infer reads what 01_prepare wrote; a
    ConfigError when they lack a column the baseline reads."""
    missing = [f for f in baseline.features if f not in features]
    if missing:
        raise ConfigError(
            f"infer.baseline={name} reads the prepared features {list(baseline.features)}; "
            f"prepare.features lacks {missing}: add them (params/hdcza.yaml lists them)"
        )
    return list(features)


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))
