"""Synthetic competition files: realistic stand-ins for the Kaggle data, in its exact schema.

The demo, the tests and the benchmarks need data that behaves like the real recordings (their
sleep schedules, not-worn days, copied days, daylight-saving switches and odd lengths) without
shipping licensed files. `write_synthetic` writes `train_series.parquet`, `train_events.csv` and
`test_series.parquet` exactly as the competition does (same columns, dtypes and parquet physical
types), one series at a time, so the full competition scale (277 series, ~128M rows) runs in
bounded memory.

Every label constant below was measured on the real labels of all 277 training series
(`all_train_events.csv`) by `bench/fit_synthetic_stats.py`; the signal constants were tuned so
that the same script's signal statistics (enmo quantiles, share of enmo == 0, |diff anglez|
quantiles, still stretches) of generated series match those of the one real series we have,
then (generator version 2) so that an adversarial classifier tells 30-min windows of generated
series from the real ones less well (`bench/realism.py`). Nothing here reads the real files at
run time. `variety` adds series unlike the competition's children (later schedules, the other
wrist, other sensors), for a model that meets other people's recordings.

Each series is generated from (seed, split, index) alone, so the same seed gives byte-identical
files and memory does not grow with the number of series.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.signal import lfilter

from sleepdetect.core.constants import (
    STEP_SECONDS,
    STEPS_PER_DAY,
    STEPS_PER_HOUR,
    STEPS_PER_MINUTE,
    TIMESTAMP_FORMAT,
)
from sleepdetect.core.files import atomic_path
from sleepdetect.core.progress import progress
from sleepdetect.core.records import write_record

TIME_ZONE = "America/New_York"  # the real offsets are only -0400 and -0500

SERIES_SCHEMA = pa.schema(
    [
        ("series_id", pa.large_string()),
        ("step", pa.uint32()),
        ("timestamp", pa.large_string()),
        ("anglez", pa.float32()),
        ("enmo", pa.float32()),
    ]
)
EVENTS_HEADER = "series_id,night,event,step,timestamp\n"
SYNTHETIC_RECORD = "synthetic.json"

# Full competition scale: the real training file has 277 series and 127,946,340 rows. These
# arguments give 127,920,420 train rows (99.98 %; `train_rows` counts them without generating):
#   python -m sleepdetect synth --out DIR --series 277 --days 27.0 --seed 0
FULL_SCALE = {"n_series": 277, "days": 27.0, "seed": 0}

# ---------------------------------------------------------------- fitted label statistics
# Measured on all_train_events.csv (277 series, 7243 nights) by bench/fit_synthetic_stats.py.

# Series start: every one on a quarter hour (:00 :15 :30 :45 equally often) with seconds 00, so
# events on whole minutes have step % 12 == 0. Start weekday counts Mon..Sun and local start
# hour counts 8..19 h (hand-over of the device during office hours; never at night).
START_WEEKDAY_COUNTS = (40, 59, 48, 57, 56, 9, 0)
START_HOUR_COUNTS = {8: 1, 9: 4, 10: 15, 11: 43, 12: 59, 13: 25, 14: 11, 15: 24, 16: 45,
                     17: 30, 18: 11, 19: 1}  # fmt: skip
START_DATES = (date(2017, 8, 4), date(2019, 6, 27))
# Series length: quantiles (at LENGTH_RATIO_Q) of nights per series / mean nights (26.17); the
# length in days follows the same shape around the requested mean.
LENGTH_RATIO_Q = (0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1)
LENGTH_RATIO_KNOTS = (0.0764, 0.1911, 0.4586, 0.7643, 0.8408, 0.879, 0.879, 0.9172, 0.9401,
                      1.070, 1.299, 1.414, 1.529, 1.938, 3.210)  # fmt: skip

# Sleep timing, a mixed model fitted per night with both events (4781 nights of 269 series):
#   onset (h after midnight of the evening's date) = series mean + weekday shift + series sd * e
#   sleep length (h) = series mean + slope * (onset - series mean) + series sd * e
# Measured: series means of onset 22.75 h (between-series sd 1.337 h, corrected for the noise
# in each mean; skew 0.77); sleep-length series means 8.654 h, falling 0.459 h per hour of later
# mean onset (between-series sd 0.885 h in all, 0.637 h around that line); within a series the
# sleep length falls 0.546 h per hour of later onset; weekday shifts of the onset (Fri and Sat
# evenings ~0.6 h later); residuals skewed (onset +0.59, sleep -0.40) with excess kurtosis 5.2
# and 3.6. The residuals e are standardised shifted log-normals with those skews. Series sds are
# log-normal; their parameters are calibrated, not copied: they are set so that re-measuring
# generated labels (bench/fit_synthetic_stats.py --plans) gives the measured log-sd mean and
# spread (0.100 +- 0.435 onset, 0.001 +- 0.514 sleep), which include the sampling noise of an
# sd from ~20 nights.
ONSET_MEAN_H = 22.75
ONSET_BETWEEN_SD_H = 1.337
ONSET_MEAN_SKEW_SIGMA = 0.248  # log-normal sigma with skew 0.77
ONSET_WEEKDAY_SHIFT_H = (-0.320, -0.382, -0.291, -0.232, 0.593, 0.686, -0.073)  # Mon..Sun eve
ONSET_WITHIN_LOG_SD = (0.15, 0.38)  # calibrated mean and sd of log(within-series sd in h)
ONSET_RESID_SKEW_SIGMA = 0.192  # skew 0.59
SLEEP_MEAN_H = 8.654
SLEEP_MEAN_SLOPE_ON_ONSET_MEAN = -0.459
SLEEP_BETWEEN_RESID_SD_H = 0.637
SLEEP_SLOPE_ON_ONSET = -0.546  # later onset, shorter sleep (r = -0.57)
SLEEP_WITHIN_LOG_SD = (0.015, 0.48)  # calibrated
SLEEP_RESID_SKEW_SIGMA = -0.133  # skew -0.40 (a longer left tail: short nights)
SLEEP_MIN_H = 0.75  # a labelled sleep lasts at least 30 min (competition rule); real min 0.8 h

# Nights without events: 33.9 % of all nights. 2.9 % of series have none labelled; otherwise
# they sit before the first labelled night (11 % of series, 2.1 nights on average), after the
# last one (60 % of series, far more often in long series; share of the series' nights: deciles
# below, larger in long series) or in runs in between (0.080 runs per night of the labelled
# span, 1.95 nights per run on average). The rates marked "calibrated" are set so that the
# generated labels re-measure to those values (runs cannot touch the ends or each other).
P_SERIES_ALL_EMPTY = 0.0289
P_LEADING_EMPTY = 0.1115
LEADING_EMPTY_MEAN_NIGHTS = 2.1
# by series length / mean length: < 0.764, < 0.955, < 1.223, longer (20, 25, 32 real nights)
TRAILING_LENGTH_BANDS = (0.764, 0.955, 1.223)
P_TRAILING_EMPTY_BY_BAND = (0.3667, 0.5448, 0.6333, 0.8125)
TRAILING_SHARE_KNOTS = (0.0313, 0.0413, 0.0417, 0.0455, 0.0833, 0.0870, 0.1304, 0.2146, 0.4369,
                        0.7132, 0.9583)  # fmt: skip
TRAILING_SHARE_KNOTS_LONG = (0.0270, 0.0504, 0.0639, 0.0909, 0.1524, 0.2072, 0.3324, 0.5259,
                             0.6619, 0.8272, 0.9767)  # fmt: skip
MIDDLE_EMPTY_RUNS_PER_NIGHT = 0.105  # calibrated
MIDDLE_EMPTY_MEAN_NIGHTS = 2.15  # calibrated

# ---------------------------------------------------------------- behaviour (not labelled)
P_NAP_PER_DAY = 0.15  # a daytime sleep of 20-100 min that the labels ignore
P_SHORT_NONWEAR_PER_DAY = 0.2  # device off for 20-120 min in a labelled day (bath, sport)
AROUSALS_PER_8H = 2.5  # brief (< 30 min) awakenings inside a labelled sleep
NONWEAR_MODE_P = {"copy": 0.45, "flat": 0.35, "drift": 0.20}  # copy needs a day of history

# ---------------------------------------------------------------- variety (beyond the children)
# The competition's children are not everyone who wears a device: with `variety` > 0 that share
# of series is drawn from a wider population. Each of its traits is on with probability 1/2.
VARIETY_ONSET_SHIFT_H = (0.5, 3.0)  # later schedules (teenagers, adults, shift work)
VARIETY_SLEEP_SHIFT_H = (-2.0, 0.0)  # and shorter sleep (adults sleep ~7 h, children ~8.7 h)
VARIETY_AWAKE_IN_BED_MIN = (20, 90)  # lying awake in bed before sleep (insomnia, a phone)
VARIETY_NOISE_G = (0.002, 0.01)  # another sensor's noise floor: enmo less often zero
VARIETY_NOISE_DEG = (0.05, 0.5)  # and anglez never quite still
VARIETY_NONWEAR_FACTOR = (2.0, 5.0)  # short not-worn gaps (charging, showers) more often
GENERATOR_VERSION = 2  # raised with every change to what a seed generates

# Regime codes of the per-step behaviour timeline. SETTLED: the first minutes of a sleep, when
# the sleeper keeps the posture they fell asleep in.
ACTIVE, SEDENTARY, IN_BED, SLEEP, DRIFT, FLAT, COPY, SETTLED = range(8)


@dataclass(frozen=True)
class Regime:
    """How the wrist moves in one behavioural state; one row of the signal model.

    Movement intensity is a log-normal AR(1) process shared by enmo and anglez, so bursts show in
    both. Posture is piecewise constant: at random changes a new level near the last one, reached
    in 1-3 steps. anglez = posture + an AR(1) wiggle whose increments are themselves correlated
    (turns continue over steps) + jitter, all driven by the intensity; enmo = max(0, posture
    offset + movement + noise). The constants were set with bench/realism.py (v2: adversarial
    AUC 0.987 -> 0.959 against the real series).
    """

    intensity_sd: float  # sd of log intensity
    enmo_move: float  # g of enmo per unit intensity
    angle_move: float  # degrees of anglez innovation per unit intensity (accumulates)
    angle_jitter: float  # degrees of white anglez noise per unit intensity (does not)
    posture_steps: float  # mean steps between posture changes
    level_sd: float  # sd of posture levels (deg)
    offset_mean: float  # calibration offset of enmo in a posture (g); < 0 gives enmo == 0
    offset_sd: float
    burst: float  # median enmo burst at a posture change (g)
    # mean posture (deg; the real child's arm lies at -27 asleep, -11 awake), times a
    # per-series factor (mirrored for the other wrist: Variety)
    level_mean: float = 0.0
    posture_group: int = -1  # regimes of one group keep a posture across their borders (-1: own)


REGIMES = {
    ACTIVE: Regime(1.1, 0.022, 10.0, 4.0, 12.0, 20.0, 0.006, 0.010, 0.05, -10.0),
    SEDENTARY: Regime(0.9, 0.010, 2.0, 0.5, 60.0, 28.0, 0.004, 0.010, 0.04, -10.0),
    IN_BED: Regime(0.9, 0.004, 0.6, 0.1, 50.0, 45.0, 0.004, 0.012, 0.04, -25.0, IN_BED),
    SLEEP: Regime(1.5, 0.0008, 0.06, 0.02, 30.0, 45.0, 0.006, 0.012, 0.02, -25.0, IN_BED),
    DRIFT: Regime(0.6, 0.020, 0.6, 0.3, 1e9, 15.0, 0.0, 0.0, 0.0),
    FLAT: Regime(0.0, 0.0, 0.0, 0.0, 1e9, 30.0, -1.0, 0.0, 0.0),
    COPY: Regime(0.0, 0.0, 0.0, 0.0, 1e9, 30.0, -1.0, 0.0, 0.0),
}
REGIMES[SETTLED] = replace(REGIMES[SLEEP], posture_steps=1e9)  # sleep, holding its posture
P_ACTIVE_DAY = 0.65  # share of active (vs sedentary) wake bouts 8-19 h
P_ACTIVE_EVENING = 0.45
ANGLE_AR = 0.9  # anglez wiggle relaxes to the posture within a minute
DRIFT_ANGLE_AR = 0.995  # a device lying loose drifts slowly
INTENSITY_AR = 0.85
ANGLE_INTENSITY_POWER = 0.6
POSTURE_RAMP_STEPS = 3  # a posture change takes 1 to this many steps
POSTURE_MEMORY = 0.85  # AR(1) coefficient of successive posture levels
ANGLE_VELOCITY_AR = 0.2  # arm turns continue over consecutive steps
SETTLE_MIN = (5, 40)  # minutes after onset without posture change (uniform range)
AFTER_WAKEUP_MIN = (0, 20)  # minutes in bed after the wakeup (uniform range)
P_BACK_TO_BED = 0.1  # a night whose wakeup is followed by 30-90 min up, then a doze in bed


@dataclass(frozen=True)
class Variety:
    """How one series departs from the competition's children (all defaults: it does not)."""

    onset_shift_h: float = 0.0  # added to the series' mean onset
    sleep_shift_h: float = 0.0  # added to its mean sleep length
    awake_in_bed_min: int = 0  # more minutes in bed before each onset
    mirrored: bool = False  # worn on the other wrist: anglez changes sign
    noise_g: float = 0.0  # sd of the sensor noise added to enmo (half-normal)
    noise_deg: float = 0.0  # sd of the noise added to anglez
    nonwear_factor: float = 1.0  # times as many short not-worn gaps


def draw_variety(rng: np.random.Generator) -> Variety:
    """A wider-population series: each trait on with probability 1/2 (at least one)."""
    on = rng.random(6) < 0.5
    if not on.any():
        on[rng.integers(6)] = True
    u = rng.uniform
    return Variety(
        onset_shift_h=u(*VARIETY_ONSET_SHIFT_H) if on[0] else 0.0,
        sleep_shift_h=u(*VARIETY_SLEEP_SHIFT_H) if on[0] else 0.0,
        awake_in_bed_min=int(rng.integers(*VARIETY_AWAKE_IN_BED_MIN)) if on[1] else 0,
        mirrored=bool(on[2]),
        noise_g=u(*VARIETY_NOISE_G) if on[3] else 0.0,
        noise_deg=u(*VARIETY_NOISE_DEG) if on[4] else 0.0,
        nonwear_factor=u(*VARIETY_NONWEAR_FACTOR) if on[5] else 1.0,
    )


# ---------------------------------------------------------------- plan of one series


@dataclass
class SeriesPlan:
    """Everything about one series except its per-step signal: cheap to make, so lengths and
    labels can be inspected (and the full scale sized) without generating signals."""

    series_id: str
    start_local: datetime
    start_utc: int  # epoch seconds
    n_steps: int
    onset: np.ndarray  # per night, step of the (possibly unrecorded) sleep onset
    wakeup: np.ndarray
    labelled: np.ndarray  # per night: the device was worn, so its events are written
    length_ratio: float = 1.0  # n_steps / mean length
    variety: Variety = field(default_factory=Variety)
    nonwear: list[tuple[int, int, int]] = field(default_factory=list)  # (start, stop, regime)
    naps: list[tuple[int, int]] = field(default_factory=list)


def _seed_sequences(seed: int, split: int, index: int) -> tuple[np.random.Generator, ...]:
    """Independent generators for the id, the content and the variety of series (split,
    index); a series without variety is the same with any `variety` share."""
    ss = np.random.SeedSequence([seed, split, index, 20231])
    return tuple(np.random.default_rng(s) for s in ss.spawn(3))


def series_id_for(seed: int, split: int, index: int) -> str:
    """The 12-hex-digit id of series (split, index), like the real ids."""
    return _seed_sequences(seed, split, index)[0].bytes(6).hex()


def _to_utc(local: datetime) -> int:
    """Epoch seconds of a wall-clock time in TIME_ZONE (the first of repeated fall-back hours)."""
    return int(local.replace(tzinfo=ZoneInfo(TIME_ZONE)).timestamp())


def _weights(counts: tuple[int, ...] | list[int]) -> np.ndarray:
    w = np.asarray(counts, float)
    return w / w.sum()


def _start_hour(rng: np.random.Generator) -> int:
    hours = list(START_HOUR_COUNTS)
    return int(hours[rng.choice(len(hours), p=_weights(list(START_HOUR_COUNTS.values())))])


def _first_sunday_of_november(year: int) -> date:
    d = date(year, 11, 1)
    return d + timedelta(days=(6 - d.weekday()) % 7)


def _length_ratio(rng: np.random.Generator) -> float:
    """Series length / mean length, from the real quantiles (piecewise linear), mean 1."""
    q, knots = np.asarray(LENGTH_RATIO_Q), np.asarray(LENGTH_RATIO_KNOTS)
    mean = float(np.sum(np.diff(q) * (knots[1:] + knots[:-1]) / 2))
    return float(np.interp(rng.random(), q, knots)) / mean


def make_plan(
    seed: int, split: int, index: int, days: float, role: str = "", variety: float | Variety = 0.0
) -> SeriesPlan:
    """Draw start, length, nights, events and not-worn stretches of one series.

    `role` forces a feature the tests and the demo rely on: "dst" (crosses the November
    daylight-saving change), "short" (under a day, one night), "showcase" (at least 3 nights
    with a not-worn middle night copied from an earlier day, and a nap). With probability
    `variety` the series comes from the wider population (see `Variety`); a Variety forces it.
    """
    _, rng, rng_variety = _seed_sequences(seed, split, index)
    if isinstance(variety, Variety):
        varied = variety
    elif rng_variety.random() < variety and not role:  # the tests' series stay children
        varied = draw_variety(rng_variety)
    else:
        varied = Variety()
    sid = series_id_for(seed, split, index)

    # -- start: a weekday, office hours, on a quarter hour
    if role == "dst":
        sunday = _first_sunday_of_november(int(rng.choice([2017, 2018])))
        day = sunday - timedelta(days=int(rng.integers(2, 4)))  # Thursday or Friday
    else:
        lo, hi = START_DATES
        day = lo + timedelta(days=int(rng.integers(0, (hi - lo).days + 1)))
        weekday = int(rng.choice(7, p=_weights(START_WEEKDAY_COUNTS)))
        day += timedelta(days=(weekday - day.weekday()) % 7)
    hour = int(rng.integers(13, 19)) if role == "short" else _start_hour(rng)
    start_local = datetime(day.year, day.month, day.day, hour, 15 * int(rng.integers(0, 4)))

    # -- end: also in office hours, whole days later so the mean length is `days`
    end_hour = int(rng.integers(7, 12)) if role == "short" else _start_hour(rng)
    end_clock = timedelta(hours=end_hour, minutes=15 * int(rng.integers(0, 4)))
    start_clock = timedelta(hours=start_local.hour, minutes=start_local.minute)
    target = days * _length_ratio(rng)
    n_days = max(0, round(target - (end_clock - start_clock) / timedelta(days=1)))
    if role == "short":
        n_days = 1
    elif role == "dst":
        n_days = max(n_days, (sunday - day).days + 1)
    elif role == "showcase":
        n_days = max(n_days, 4)
    end_local = datetime.combine(day + timedelta(days=n_days), datetime.min.time()) + end_clock
    if end_local - start_local < timedelta(hours=1):
        end_local += timedelta(days=1)
    start_utc = _to_utc(start_local)
    n_steps = (_to_utc(end_local) - start_utc) // STEP_SECONDS

    # -- nights: one per evening whose night the recording reaches (night k: date day + k - 1)
    last_evening = (end_local - timedelta(hours=20)).date()
    n_nights = max(0, (last_evening - day).days + 1)
    onset, wakeup = _draw_sleep(rng, start_local, start_utc, n_nights, varied)
    ratio = n_steps / (days * STEPS_PER_DAY)
    plan = SeriesPlan(sid, start_local, start_utc, int(n_steps), onset, wakeup,
                      np.ones(n_nights, bool), ratio, varied)  # fmt: skip
    _draw_nonwear(rng, plan, role)
    _draw_naps(rng, plan, role)
    return plan


def _draw_sleep(
    rng: np.random.Generator,
    start_local: datetime,
    start_utc: int,
    n_nights: int,
    variety: Variety,
) -> tuple[np.ndarray, np.ndarray]:
    """Onset and wakeup steps of every night from the fitted mixed model, on whole minutes."""
    on_mean = ONSET_MEAN_H + ONSET_BETWEEN_SD_H * _skewed(rng, ONSET_MEAN_SKEW_SIGMA)
    on_mean += variety.onset_shift_h
    on_sd = math.exp(ONSET_WITHIN_LOG_SD[0] + ONSET_WITHIN_LOG_SD[1] * rng.standard_normal())
    sl_mean = SLEEP_MEAN_H + SLEEP_MEAN_SLOPE_ON_ONSET_MEAN * (on_mean - ONSET_MEAN_H)
    sl_mean += SLEEP_BETWEEN_RESID_SD_H * rng.standard_normal() + variety.sleep_shift_h
    sl_sd = math.exp(SLEEP_WITHIN_LOG_SD[0] + SLEEP_WITHIN_LOG_SD[1] * rng.standard_normal())
    onset = np.zeros(n_nights, np.int64)
    wakeup = np.zeros(n_nights, np.int64)
    prev_wakeup = -(10**9)
    midnight = datetime.combine(start_local.date(), datetime.min.time())
    for k in range(n_nights):
        evening = midnight + timedelta(days=k)
        dev = on_sd * _skewed(rng, ONSET_RESID_SKEW_SIGMA)
        dev += ONSET_WEEKDAY_SHIFT_H[evening.weekday()]
        length = sl_mean + SLEEP_SLOPE_ON_ONSET * dev
        length += sl_sd * _skewed(rng, SLEEP_RESID_SKEW_SIGMA)
        minutes = round((on_mean + dev) * 60)
        on_step = (_to_utc(evening + timedelta(minutes=minutes)) - start_utc) // STEP_SECONDS
        # keep nights apart and the first onset after the start, on whole minutes
        on_step = max(on_step, prev_wakeup + 2 * STEPS_PER_HOUR, STEPS_PER_HOUR // 2)
        on_step -= on_step % STEPS_PER_MINUTE
        sleep_min = round(float(np.clip(length, SLEEP_MIN_H, 16.0)) * 60)
        onset[k], wakeup[k] = on_step, on_step + sleep_min * STEPS_PER_MINUTE
        prev_wakeup = wakeup[k]
    return onset, wakeup


def _skewed(rng: np.random.Generator, sigma: float) -> float:
    """A zero-mean, unit-variance draw skewed like a log-normal of `sigma` (mirrored if < 0)."""
    a = abs(sigma)
    w = math.exp(a * a)
    z = (math.exp(a * rng.standard_normal()) - math.sqrt(w)) / math.sqrt(w * (w - 1))
    return z if sigma >= 0 else -z


def _geometric(rng: np.random.Generator, mean: float) -> int:
    return int(rng.geometric(1.0 / max(mean, 1.0)))


def _draw_nonwear(rng: np.random.Generator, plan: SeriesPlan, role: str) -> None:
    """Choose the nights without events and the not-worn stretch that covers each run of them,
    plus short not-worn gaps in labelled days."""
    k = len(plan.onset)
    empty = np.zeros(k, bool)
    runs: list[tuple[int, int]] = []  # [first, last] night indices of each empty run
    if k and role == "showcase":
        if k >= 3:
            runs.append((1, 1))
    elif k and rng.random() < P_SERIES_ALL_EMPTY and not role:
        runs = [(i, i) for i in range(k)]
    elif k:
        lead = _geometric(rng, LEADING_EMPTY_MEAN_NIGHTS) if rng.random() < P_LEADING_EMPTY else 0
        band = int(np.digitize(plan.length_ratio, TRAILING_LENGTH_BANDS))
        trail = 0
        if rng.random() < P_TRAILING_EMPTY_BY_BAND[band]:
            long = band == len(TRAILING_LENGTH_BANDS)
            knots = np.asarray(TRAILING_SHARE_KNOTS_LONG if long else TRAILING_SHARE_KNOTS)
            share = float(np.interp(rng.random(), np.linspace(0, 1, len(knots)), knots))
            trail = max(1, round(share * k))
        lead = min(lead, k - 1)  # all-empty series come from the branch above only
        trail = min(trail, k - lead - 1)
        if lead:
            runs.append((0, lead - 1))
        i = lead + 1  # a middle run starts after a labelled night and ends before another
        while i < k - trail - 1:
            if rng.random() < MIDDLE_EMPTY_RUNS_PER_NIGHT:
                n = min(_geometric(rng, MIDDLE_EMPTY_MEAN_NIGHTS), k - trail - 1 - i)
                runs.append((i, i + n - 1))
                i += n + 1
            else:
                i += 1
        if trail:
            runs.append((k - trail, k - 1))
    for first, last in runs:
        empty[first : last + 1] = True
    plan.labelled = ~empty

    n = plan.n_steps
    h = STEPS_PER_HOUR
    prev_stop = 0  # stretches never overlap (one-night runs of an all-empty series could)
    for first, last in runs:
        # from some time in the day before the first empty night to some time in the day after
        # the last; from the start / to the end of the recording when the run touches it
        lo = int(plan.wakeup[first - 1]) + h if first else 0
        start = _between(rng, lo, int(plan.onset[first]) - h) if first else 0
        hi = int(plan.onset[last + 1]) - h if last < k - 1 else n
        stop = _between(rng, int(plan.wakeup[last]) + h // 2, hi) if last < k - 1 else n
        start, stop = max(prev_stop, start), min(n, stop)
        if stop <= start:
            continue
        prev_stop = stop
        mode = "copy" if role == "showcase" else _nonwear_mode(rng, start)
        code = {"copy": COPY, "flat": FLAT, "drift": DRIFT}[mode]
        if code == COPY and start < STEPS_PER_DAY:  # a copy needs a whole day before it
            if first and STEPS_PER_DAY < int(plan.onset[first]) - h:
                start = STEPS_PER_DAY
            else:
                code = FLAT
        plan.nonwear.append((start, stop, code))
    # short not-worn gaps in labelled days
    for i in range(k - 1):
        p_gap = min(1.0, P_SHORT_NONWEAR_PER_DAY * plan.variety.nonwear_factor)
        if plan.labelled[i] and plan.labelled[i + 1] and rng.random() < p_gap:
            length = int(rng.integers(20, 121)) * STEPS_PER_MINUTE
            lo, hi = int(plan.wakeup[i]) + h, int(plan.onset[i + 1]) - h - length
            if hi > lo:
                start = _between(rng, lo, hi)
                plan.nonwear.append((start, start + length, FLAT))


def _between(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A whole-minute step in [lo, hi], or their middle when the range is empty."""
    if hi <= lo:
        value = (lo + hi) // 2
    else:
        value = int(rng.integers(lo, hi + 1))
    return value - value % STEPS_PER_MINUTE


def _nonwear_mode(rng: np.random.Generator, start: int) -> str:
    modes = list(NONWEAR_MODE_P)
    p = np.array([NONWEAR_MODE_P[m] for m in modes])
    if start < STEPS_PER_DAY:  # nothing earlier to copy
        p[modes.index("copy")] = 0.0
    return modes[int(rng.choice(len(modes), p=p / p.sum()))]


def _draw_naps(rng: np.random.Generator, plan: SeriesPlan, role: str) -> None:
    """Unlabelled daytime sleeps between 13 and 18 h, clear of the night sleeps."""
    day0 = datetime.combine(plan.start_local.date(), datetime.min.time())
    n_days = plan.n_steps // STEPS_PER_DAY + 2
    for d in range(n_days):
        if not (rng.random() < P_NAP_PER_DAY or (role == "showcase" and d == 2)):
            continue
        at = day0 + timedelta(days=d, hours=13, minutes=int(rng.integers(0, 300)))
        start = (_to_utc(at) - plan.start_utc) // STEP_SECONDS
        stop = start + int(rng.integers(20, 101)) * STEPS_PER_MINUTE
        if start < 0 or stop > plan.n_steps:
            continue
        near = np.abs(np.r_[plan.onset, plan.wakeup] - (start + stop) / 2)
        if near.size == 0 or near.min() > 3 * STEPS_PER_HOUR:
            plan.naps.append((int(start), int(stop)))


# ---------------------------------------------------------------- per-step signal


def _timeline(rng: np.random.Generator, plan: SeriesPlan) -> np.ndarray:
    """Regime per step: active/sedentary bouts by day, in bed around and during sleep, brief
    arousals, naps, and not-worn stretches last so they override everything else."""
    n = plan.n_steps
    clock0 = plan.start_local.hour * 3600 + plan.start_local.minute * 60
    # bouts: log-normal lengths (minutes), type drawn by the hour of the day
    n_bouts = n // (4 * STEPS_PER_MINUTE) + 16
    hours = np.full(n_bouts, 12.0)  # first pass: daytime odds, then by each bout's own hour
    for _ in range(2):
        active = rng.random(n_bouts) < np.where(
            (hours >= 8) & (hours < 19), P_ACTIVE_DAY, P_ACTIVE_EVENING
        )
        minutes = np.where(
            active,
            rng.lognormal(math.log(6.0), 0.9, n_bouts),
            rng.lognormal(math.log(9.0), 1.0, n_bouts),
        )
        lengths = np.maximum(1, np.round(minutes * STEPS_PER_MINUTE)).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        hours = ((clock0 + starts * STEP_SECONDS) / 3600.0) % 24
    while lengths.sum() < n:  # rare: pad with sedentary
        lengths = np.append(lengths, n)
        active = np.append(active, False)
    regime = np.repeat(np.where(active, ACTIVE, SEDENTARY).astype(np.int8), lengths)[:n]

    m = STEPS_PER_MINUTE
    last_up = 0  # the end of the previous night's time in bed
    for on, wk in zip(plan.onset.tolist(), plan.wakeup.tolist(), strict=True):
        pre = (int(rng.integers(5, 46)) + plan.variety.awake_in_bed_min) * m
        pre = min(pre, max(0, on - last_up))
        post = int(rng.integers(AFTER_WAKEUP_MIN[0], AFTER_WAKEUP_MIN[1] + 1)) * m
        settle = int(rng.integers(SETTLE_MIN[0], SETTLE_MIN[1] + 1)) * m
        regime[max(0, on - pre) : max(0, on)] = IN_BED
        regime[max(0, on) : max(0, wk)] = SLEEP
        regime[max(0, on) : max(0, min(on + settle, wk))] = SETTLED
        regime[max(0, wk) : max(0, wk + post)] = IN_BED
        last_up = wk + post
        if rng.random() < P_BACK_TO_BED:  # up for 30-90 min, then dozing 30-150 min, unlabelled
            up = wk + post + int(rng.integers(30, 91)) * m
            regime[max(0, up) : max(0, up + int(rng.integers(30, 151)) * m)] = SLEEP
        n_arousals = rng.poisson(AROUSALS_PER_8H * (wk - on) / (8 * STEPS_PER_HOUR))
        for _ in range(n_arousals):
            length = int(np.clip(rng.lognormal(math.log(4.0), 0.7), 1, 25)) * m
            lo, hi = on + 15 * m, wk - 15 * m - length
            if hi > lo:
                a = int(rng.integers(lo, hi))
                regime[max(0, a) : max(0, a + length)] = ACTIVE if rng.random() < 0.15 else IN_BED
    for start, stop in plan.naps:
        regime[start : start + 5 * m] = IN_BED
        regime[start + 5 * m : stop] = SLEEP
    for start, stop, code in plan.nonwear:
        regime[start:stop] = code
    return regime


def _fold_angle(u: np.ndarray) -> np.ndarray:
    """Reflect any angle into [-90, 90] (a triangle wave), so large swings bounce off the poles
    instead of sticking to them."""
    v = np.mod(u + 90.0, 360.0)
    return np.where(v <= 180.0, v - 90.0, 270.0 - v)


def generate_signal(plan: SeriesPlan, seed: int, split: int, index: int) -> tuple[np.ndarray, ...]:
    """anglez and enmo (float32, rounded to 4 decimals like the real files) of one series."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, split, index, 20231, 1]))
    regime = _timeline(rng, plan)
    n = plan.n_steps
    table = [REGIMES[c] for c in range(len(REGIMES))]
    col = {f: np.array([getattr(r, f) for r in table]) for f in Regime.__dataclass_fields__}

    # per-series temperament: how much a child moves in general and in sleep
    activity = rng.lognormal(0.0, 0.25)
    restless = rng.lognormal(0.0, 0.4)

    # shared log-intensity (unit AR(1)), scaled per regime
    x = lfilter([math.sqrt(1 - INTENSITY_AR**2)], [1.0, -INTENSITY_AR], rng.standard_normal(n))
    np.minimum(x, 3.5, out=x)  # caps enmo near the real maxima (~3 g) instead of 10+ g
    intensity = np.exp(col["intensity_sd"][regime] * x) * activity

    # postures: changes at a regime-dependent rate, modulated in 30-min blocks (long still
    # stretches and restless spells); a new posture at every regime change, except between
    # lying in bed and sleeping (one falls asleep, and wakes, in the posture one lies in)
    block = rng.lognormal(0.0, 0.8, n // 360 + 1)[np.arange(n) // 360]
    rate = block / col["posture_steps"][regime]
    rate = np.where(regime == SLEEP, rate * restless, rate)
    change = rng.random(n) < rate
    change[0] = True
    group = np.where(col["posture_group"] >= 0, col["posture_group"], np.arange(len(table)))
    group = group[regime]
    change[1:] |= group[1:] != group[:-1]
    seg = np.cumsum(change) - 1
    seg_start = np.flatnonzero(change)
    seg_regime = regime[seg_start]
    # a new posture is near the last one (turning over, not teleporting): an AR(1) of levels
    a = POSTURE_MEMORY
    level = col["level_sd"][seg_regime] * rng.standard_normal(seg_start.size)
    level = lfilter([math.sqrt(1 - a * a)], [1.0, -a], level)
    level = np.clip(level + col["level_mean"][seg_regime] * rng.lognormal(0.0, 0.3), -88, 88)
    offset = col["offset_mean"][seg_regime] + col["offset_sd"][seg_regime] * rng.standard_normal(
        seg_start.size
    )
    posture = level[seg]
    # a turn takes 1 to POSTURE_RAMP_STEPS steps: the first steps of a posture lie on the way
    ramp = rng.integers(1, POSTURE_RAMP_STEPS + 1, seg_start.size)
    for j in range(1, POSTURE_RAMP_STEPS):
        turning = np.flatnonzero((ramp > j) & (seg_start > 0))
        at = np.minimum(seg_start[turning] + j - 1, n - 1)
        before = level[np.maximum(turning - 1, 0)]
        posture[at] = before + (level[turning] - before) * j / ramp[turning]

    # anglez: posture + AR(1) wiggle driven by the intensity, its increments correlated
    # (angles respond less than enmo to the strongest movements: arm swings saturate)
    angle_intensity = intensity**ANGLE_INTENSITY_POWER
    innov = col["angle_move"][regime] * angle_intensity * rng.standard_normal(n)
    innov = lfilter([math.sqrt(1 - ANGLE_VELOCITY_AR**2)], [1.0, -ANGLE_VELOCITY_AR], innov)
    wiggle = lfilter([1.0], [1.0, -ANGLE_AR], innov)
    for start, stop, code in plan.nonwear:
        if code == DRIFT:
            wiggle[start:stop] = lfilter([1.0], [1.0, -DRIFT_ANGLE_AR], innov[start:stop])
    jitter = col["angle_jitter"][regime] * angle_intensity * rng.standard_normal(n)
    anglez = _fold_angle(posture + wiggle + jitter)

    # enmo: posture calibration offset + movement + sensor noise + bursts at posture changes
    enmo = offset[seg] + col["enmo_move"][regime] * intensity
    enmo += 0.0015 * rng.standard_normal(n)
    burst = col["burst"][seg_regime] * rng.lognormal(0.0, 0.8, seg_start.size)
    for lag, weight in enumerate((1.0, 0.6, 0.25)):
        at = np.minimum(seg_start + lag, n - 1)
        enmo[at] += weight * burst
    varied = plan.variety
    if varied.noise_g or varied.noise_deg:  # drawn last: the other draws stay the same
        enmo += varied.noise_g * np.abs(rng.standard_normal(n))
        anglez = np.clip(anglez + varied.noise_deg * rng.standard_normal(n), -90.0, 90.0)
    flat = (regime == FLAT) | (regime == COPY)
    enmo[flat] = 0.0
    anglez[flat] = level[seg][flat]  # one constant per stretch
    if varied.mirrored:
        anglez = -anglez

    anglez = np.round(anglez, 4).astype(np.float32)
    enmo = np.maximum(np.round(enmo, 4), 0.0).astype(np.float32)
    # copied days: the real files repeat earlier days exactly where the device was not worn
    for start, stop, code in plan.nonwear:
        if code == COPY:
            for a in range(start, stop, STEPS_PER_DAY):
                b = min(a + STEPS_PER_DAY, stop)
                anglez[a:b] = anglez[a - STEPS_PER_DAY : b - STEPS_PER_DAY]
                enmo[a:b] = enmo[a - STEPS_PER_DAY : b - STEPS_PER_DAY]
    return anglez, enmo


def timestamps(plan: SeriesPlan, steps: np.ndarray | None = None) -> pl.Series:
    """Local ISO timestamps of `steps` (default: all) with the UTC offset of the moment, which
    changes at daylight-saving switches."""
    if steps is None:
        steps = np.arange(plan.n_steps, dtype=np.int64)
    ms = (plan.start_utc + np.asarray(steps, np.int64) * STEP_SECONDS) * 1000
    return (
        pl.Series("timestamp", ms)
        .cast(pl.Datetime("ms", "UTC"))
        .dt.convert_time_zone(TIME_ZONE)
        .dt.strftime(TIMESTAMP_FORMAT)
    )


def series_table(plan: SeriesPlan, seed: int, split: int, index: int) -> pa.Table:
    """One series in the official schema."""
    anglez, enmo = generate_signal(plan, seed, split, index)
    return pa.Table.from_arrays(
        [
            pl.repeat(plan.series_id, plan.n_steps, eager=True, dtype=pl.String).to_arrow(),
            pa.array(np.arange(plan.n_steps, dtype=np.uint32)),
            timestamps(plan).to_arrow(),
            pa.array(anglez),
            pa.array(enmo),
        ],
        schema=SERIES_SCHEMA,
    )


def event_lines(plan: SeriesPlan) -> list[str]:
    """CSV rows of one series: an onset and a wakeup row per night, step and timestamp left
    empty where the device was not worn or the event falls outside the recording."""
    rows = []
    for k in range(len(plan.onset)):
        for kind, step in (("onset", int(plan.onset[k])), ("wakeup", int(plan.wakeup[k]))):
            known = bool(plan.labelled[k]) and 0 <= step < plan.n_steps
            rows.append((k + 1, kind, step if known else None))
    known_steps = [r[2] for r in rows if r[2] is not None]
    stamps = iter(timestamps(plan, np.array(known_steps, np.int64)).to_list())
    return [
        f"{plan.series_id},{night},{kind},{step},{next(stamps)}\n"
        if step is not None
        else f"{plan.series_id},{night},{kind},,\n"
        for night, kind, step in rows
    ]


def synthetic_events(
    n_series: int = 8, days: float = 6.0, seed: int = 0, variety: float = 0.0
) -> pl.DataFrame:
    """The train_events.csv that `write_synthetic` would write, without making any signal:
    a fast way to study the labels of many series."""
    roles = _roles(TRAIN, n_series)
    lines = [EVENTS_HEADER]
    for _, i in _ordered(seed, TRAIN, n_series):
        lines += event_lines(make_plan(seed, TRAIN, i, days, roles.get(i, ""), variety))
    return pl.read_csv(
        io.StringIO("".join(lines)),
        schema_overrides={"step": pl.Int64, "night": pl.Int64, "timestamp": pl.String},
    )


# ---------------------------------------------------------------- files

TRAIN, TEST = 0, 1


def _roles(split: int, n: int) -> dict[int, str]:
    """Series that carry a guaranteed feature (by index, so each stays independent)."""
    if split == TRAIN and n >= 3:
        return {0: "showcase", 1: "dst", 2: "short"}
    return {}


def _ordered(seed: int, split: int, n: int) -> list[tuple[str, int]]:
    """(id, index) pairs sorted by id: the real files are sorted by series_id."""
    return sorted((series_id_for(seed, split, i), i) for i in range(n))


def train_rows(n_series: int = 8, days: float = 6.0, seed: int = 0) -> int:
    """Rows of the train_series.parquet that `write_synthetic` would write (plans only, fast):
    for sizing a benchmark before generating it."""
    roles = _roles(TRAIN, n_series)
    return sum(make_plan(seed, TRAIN, i, days, roles.get(i, "")).n_steps for i in range(n_series))


def write_synthetic(
    out: str | os.PathLike[str],
    n_series: int = 8,
    days: float = 6.0,
    seed: int = 0,
    variety: float = 0.0,
) -> list[Path]:
    """Write train_series.parquet, train_events.csv and test_series.parquet into `out`, and
    SYNTHETIC_RECORD (the arguments and the generator's version) last.

    `days` is the mean series length; lengths vary like the real ones (a few days to 3x the
    mean). The test file holds max(1, n_series // 4) other series without labels. `variety`:
    the share of series from a wider population than the competition's children (`Variety`).
    Same arguments, byte-identical files. Returns the three paths.
    """
    if n_series < 1:
        raise ValueError(f"write_synthetic: n_series must be >= 1, got {n_series}")
    if not days > 0:
        raise ValueError(f"write_synthetic: days must be > 0, got {days}")
    if not 0.0 <= variety <= 1.0:
        raise ValueError(f"write_synthetic: variety is a share in [0, 1], got {variety}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train = out / "train_series.parquet"
    events = out / "train_events.csv"
    test = out / "test_series.parquet"
    ids = _ordered(seed, TRAIN, n_series)
    test_ids = _ordered(seed, TEST, max(1, n_series // 4))
    if len({i for i, _ in ids} | {i for i, _ in test_ids}) != len(ids) + len(test_ids):
        raise RuntimeError(f"write_synthetic: series ids collide for seed {seed}; use another seed")

    progress = _progress(len(ids) + len(test_ids))
    with atomic_path(train) as tmp_series, atomic_path(events) as tmp_events:
        with _writer(tmp_series) as writer, open(tmp_events, "w", newline="") as ev:
            ev.write(EVENTS_HEADER)
            roles = _roles(TRAIN, n_series)
            for _, i in ids:
                plan = make_plan(seed, TRAIN, i, days, roles.get(i, ""), variety)
                writer.write_table(series_table(plan, seed, TRAIN, i))
                ev.writelines(event_lines(plan))
                progress.update()
    with atomic_path(test) as tmp_test, _writer(tmp_test) as writer:
        for _, i in test_ids:
            plan = make_plan(seed, TEST, i, days, variety=variety)
            writer.write_table(series_table(plan, seed, TEST, i))
            progress.update()
    progress.close()
    made = {"generator": GENERATOR_VERSION, "series": n_series, "days": days, "seed": seed,
            "variety": variety}  # fmt: skip
    write_record(out / SYNTHETIC_RECORD, made)
    return [train, events, test]


def _writer(path: Path) -> pq.ParquetWriter:
    """zstd like the real files; a dictionary only for series_id, as they have."""
    return pq.ParquetWriter(path, SERIES_SCHEMA, compression="zstd", use_dictionary=["series_id"])


def _progress(total: int):
    """A tqdm bar on terminals only (silent in tests and logs)."""
    return progress(total=total, desc="synthetic series", unit="series", disable=None)


# ---------------------------------------------------------------- raw recordings


@dataclass
class RawTruth:
    """A synthetic raw recording's known answers: its plan (nights, naps, not-worn stretches)
    and the 5-s anglez and enmo its samples were made from."""

    plan: SeriesPlan
    anglez: np.ndarray
    enmo: np.ndarray
    hz: float


def raw_plan(seed: int = 0, days: float = 4.0) -> SeriesPlan:
    """A showcase series for raw recordings: nights, a whole not-worn day lying flat (a device
    off the wrist reads a constant 1 g), and one 60-min nap clear of the nights."""
    plan = make_plan(seed, 0, 0, days, role="showcase")
    plan.nonwear = [(a, b, FLAT) for a, b, _ in plan.nonwear]
    plan.naps = []
    day0 = datetime.combine(plan.start_local.date(), datetime.min.time())
    for d in range(1, plan.n_steps // STEPS_PER_DAY + 1):
        start = (_to_utc(day0 + timedelta(days=d, hours=14)) - plan.start_utc) // STEP_SECONDS
        stop = start + 60 * STEPS_PER_MINUTE
        clear = all(not (a <= stop and start <= b) for a, b, _ in plan.nonwear)
        if stop < plan.n_steps and clear:
            plan.naps.append((int(start), int(stop)))
            break
    return plan


def raw_samples(
    anglez: np.ndarray, enmo: np.ndarray, hz: float, seed: int = 0, noise_g: float = 0.002
) -> np.ndarray:
    """(samples, 3) float32 x, y, z in g whose 5-s means give back `anglez` and `enmo`: each
    step's samples point at its angle (the azimuth drifting while the arm moves) with length
    1 + enmo, plus white sensor noise of `noise_g`."""
    rng = np.random.default_rng(seed)
    per_step = int(round(hz * STEP_SECONDS))
    moving = np.abs(np.diff(anglez, prepend=anglez[:1])) > 0.5
    azimuth = np.cumsum(rng.normal(0.0, 0.05, len(anglez)) * moving)
    a, phi = np.radians(anglez.astype(np.float64)), azimuth
    length = 1.0 + enmo.astype(np.float64)
    unit = np.stack([np.cos(a) * np.cos(phi), np.cos(a) * np.sin(phi), np.sin(a)], axis=1)
    xyz = np.repeat((unit * length[:, None]).astype(np.float32), per_step, axis=0)
    xyz += rng.normal(0.0, noise_g, xyz.shape).astype(np.float32)
    return xyz


def write_raw(
    path: str | os.PathLike[str], days: float = 4.0, hz: float = 30.0, seed: int = 0
) -> RawTruth:
    """A synthetic raw recording (CSV or parquet by the suffix) of time (local, with its offset)
    and x, y, z at `hz`; returns its known answers."""
    plan = raw_plan(seed, days)
    anglez, enmo = generate_signal(plan, seed, 0, 0)
    xyz = raw_samples(anglez, enmo, hz, seed)
    per_step = int(round(hz * STEP_SECONDS))
    ns = (plan.start_utc * 10**9 + np.arange(len(xyz), dtype=np.int64) * (STEP_SECONDS * 10**9)
          // per_step)  # fmt: skip
    time = pl.Series("time", ns).cast(pl.Datetime("ns", "UTC")).dt.convert_time_zone(TIME_ZONE)
    frame = pl.DataFrame({"time": time, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            frame.write_parquet(tmp)
        else:
            frame.with_columns(pl.col("time").dt.strftime("%Y-%m-%dT%H:%M:%S%.3f%:z")).write_csv(
                tmp, float_precision=5
            )
    return RawTruth(plan, anglez, enmo, hz)
