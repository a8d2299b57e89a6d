"""Several bundles' scores of one series made into one, as 03_infer, the OOF scores and
the report all make them: the fold bundles' weighted mean, blended with the outside bundles'."""

from __future__ import annotations

import numpy as np
import torch

from sleepdetect.config import Config
from sleepdetect.inference.bundles import Bundle
from sleepdetect.inference.predict import predict_series


def ensemble_scores(
    bundles: list[Bundle],
    weights: list[float],
    features: np.ndarray,
    stride: int | None,
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    """(steps, 2) weighted mean of every bundle's per-step scores for one series."""
    total = np.zeros((len(features), 2), dtype=np.float64)
    for bundle, weight in zip(bundles, weights, strict=True):
        length = bundle.config.windows.length
        total += weight * predict_series(
            bundle.model,
            features,
            length,
            stride or bundle.config.windows.valid_stride,
            batch_size=batch_size,
            device=device,
        )
    return (total / sum(weights)).astype(np.float32)


def series_scores(
    cfg: Config,
    bundles: list[Bundle],
    weights: list[float],
    outside: list[Bundle],
    features: np.ndarray,
    device: str | torch.device,
) -> np.ndarray:
    """(steps, 2) scores of one series as 03_infer makes them: the fold bundles' weighted mean,
    blended with the outside bundles'."""
    batch = cfg.infer.batch_size
    s = ensemble_scores(bundles, weights, features, cfg.infer.stride, batch, device)
    return blend_outside(s, outside, cfg.ensemble.outside_weight, features, batch, device)


def blend_outside(
    scores: np.ndarray,
    outside: list[Bundle],
    weight: float,
    features: np.ndarray,
    batch_size: int,
    device: str | torch.device,
) -> np.ndarray:
    """(steps, 2) `scores` of the fold models blended with the outside bundles' mean."""
    if not outside:
        return scores
    other = ensemble_scores(outside, [1.0] * len(outside), features, None, batch_size, device)
    return ((1 - weight) * scores + weight * other).astype(np.float32)
