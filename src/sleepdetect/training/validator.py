"""Validation as inference does it: whole segments in overlapping windows, post-processing,
the competition metric."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from sleepdetect.config import PostprocessConfig
from sleepdetect.data.prepare import Manifest
from sleepdetect.data.windows import Segment
from sleepdetect.events.candidates import predict_candidates
from sleepdetect.events.metric import event_detection_ap_table
from sleepdetect.inference.predict import predict_series
from sleepdetect.models.base import SleepModel


class Validator:
    """Scores a model on whole validation segments exactly as inference will: overlapping
    windows, post-processing, the competition metric."""

    def __init__(
        self,
        manifest: Manifest,
        segments: list[Segment],
        events: pl.DataFrame,
        length: int,
        stride: int,
        batch_size: int,
        postprocess: PostprocessConfig,
    ) -> None:
        self.manifest, self.segments = manifest, segments
        self.length, self.stride, self.batch_size = length, stride, batch_size
        self.postprocess = postprocess
        self.solution = pl.concat(
            [
                events.filter(
                    (pl.col("series_id") == s.series_id)
                    & pl.col("step").is_between(s.start, s.end - 1)
                )
                for s in segments
            ]
        ).filter(pl.col("step").is_not_null())

    def predict(self, model: SleepModel, segment: Segment, device: torch.device) -> np.ndarray:
        """(end - start, 2) scores of a segment; the whole series gives the windows context."""
        feats = self.manifest.features(segment.series_id)
        scores = predict_series(
            model, feats, self.length, self.stride, batch_size=self.batch_size, device=device
        )
        return scores[segment.start : segment.end]

    def candidates(self, segment: Segment, scores: np.ndarray) -> pl.DataFrame:
        return predict_candidates(
            self.manifest, segment.series_id, scores, self.postprocess, segment.start
        )

    def score(self, candidates: pl.DataFrame) -> tuple[pl.DataFrame, float]:
        if self.solution.is_empty():
            return pl.DataFrame(), float("nan")
        return event_detection_ap_table(self.solution, candidates)
