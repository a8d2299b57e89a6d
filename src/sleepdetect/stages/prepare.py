"""01_prepare: the competition files (or synthetic ones) -> the prepared folder, and a picture
of one series as it was read."""

from __future__ import annotations

from pathlib import Path

from sleepdetect.data.features import not_worn_of
from sleepdetect.data.io import read_series
from sleepdetect.data.prepare import Manifest, prepare
from sleepdetect.plots import plot_series
from sleepdetect.report import pick_series

__all__ = ["prepare", "series_picture"]  # prepare is data.prepare's, named here as the stage


def series_picture(manifest: Manifest, series_id: str = "") -> Path:
    """<series_id>.png beside the arrays: one prepared series (default: the first) over local
    time, its labelled sleep and its not-worn stretches."""
    sid = pick_series(manifest, series_id)
    series = read_series(manifest.source, [sid])
    events = manifest.read_events() if manifest.events else None
    not_worn = not_worn_of(series, manifest.feature(sid, "day_repeat"))
    return plot_series(series, events, manifest.root / f"{sid}.png", sid, not_worn=not_worn)
