"""Per-step scores of a stretch of one prepared series -> its scored event candidates.

The one path from scores to candidates for validation, out-of-fold scoring, `tune` and
inference: the stretch is placed in a series-long trace (zeros elsewhere, so day windows and
the minute grid are those of the whole series), post-processed as `postprocess` says, and only
the candidates inside the stretch are kept.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from sleepdetect.config import PostprocessConfig
from sleepdetect.data.prepare import Manifest
from sleepdetect.events.postprocess import series_candidates


def predict_candidates(
    manifest: Manifest,
    series_id: str,
    scores: np.ndarray,
    postprocess: PostprocessConfig,
    start: int = 0,
) -> pl.DataFrame:
    """Candidates (series_id, step, event, score) of `scores` ((steps, 2) onset/wakeup),
    which cover steps [start, start + len(scores)) of `series_id`."""
    n = manifest.lengths[series_id]
    stop = start + len(scores)
    if not 0 <= start <= stop <= n:
        raise ValueError(f"{series_id}: steps [{start}, {stop}) are outside its {n} steps")
    full = scores
    if len(scores) != n:
        full = np.zeros((n, 2), np.float32)
        full[start:stop] = scores
    entry = next(s for s in manifest.series if s.series_id == series_id)
    day_repeat = manifest.feature(series_id, "day_repeat")
    out = series_candidates(full, series_id, entry.first_timestamp, postprocess, day_repeat)
    if len(scores) != n:
        out = out.filter(pl.col("step").is_between(start, stop - 1))
    return out


def score_frame(series_id: str, scores: np.ndarray, start: int = 0) -> pl.DataFrame:
    """Per-step scores as rows (series_id, step, onset, wakeup): the out-of-fold file's
    layout, also what the night plots read; `scores` cover steps [start, start + len)."""
    return pl.DataFrame(
        {
            "series_id": series_id,
            "step": np.arange(start, start + len(scores), dtype=np.int64),
            "onset": scores[:, 0],
            "wakeup": scores[:, 1],
        }
    )
