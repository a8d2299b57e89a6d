"""The competition's fixed facts, written once: every module imports them from here."""

from __future__ import annotations

EVENTS: tuple[str, ...] = ("onset", "wakeup")  # event types, in score-column order
STEP_SECONDS = 5  # one row per 5 s
STEPS_PER_MINUTE = 60 // STEP_SECONDS  # 12: labels sit on whole minutes
STEPS_PER_HOUR = 3600 // STEP_SECONDS  # 720
STEPS_PER_DAY = 24 * STEPS_PER_HOUR  # 17280
# the metric's tolerances (steps), the same for both event types
TOLERANCES: tuple[int, ...] = (12, 36, 60, 90, 120, 150, 180, 240, 300, 360)
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%z"  # e.g. 2018-08-14T15:30:00-0400
REFERENCE_FEATURES = ["anglez", "enmo", "hour_sin", "hour_cos"]  # the public reference solution's
