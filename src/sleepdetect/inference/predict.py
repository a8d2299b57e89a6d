"""One series in, one score per step out, with a model in overlapping windows.

A series is cut into overlapping windows; each window keeps only its centre (its edges see
half a context) except at the series' ends, and overlapping centres are averaged. A series
shorter than a window is padded and cropped back, so any length gives one score per step.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from sleepdetect.models.base import SleepModel


def window_starts(n_steps: int, length: int, stride: int) -> np.ndarray:
    """Start steps of windows of `length` every `stride` steps, the last flush with the end."""
    if stride < 1 or stride > length:
        raise ValueError(f"stride must be in 1..window length ({length}), got {stride}")
    if n_steps <= length:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_steps - length, stride, dtype=np.int64)
    return np.append(starts, n_steps - length)


def _kept_weights(starts: np.ndarray, n_steps: int, length: int, stride: int) -> np.ndarray:
    """(windows, length) 1 where a window's prediction counts: its centre, plus the outer edge
    of the first and last window, so every step is covered at least once."""
    trim = (length - stride) // 2
    keep = np.zeros((len(starts), length), dtype=np.float32)
    keep[:, trim : length - trim] = 1
    keep[starts == starts.min(), :trim] = 1
    keep[starts + length >= n_steps, length - trim :] = 1
    return keep


@torch.inference_mode()
def predict_series(
    model: SleepModel,
    features: np.ndarray,
    length: int,
    stride: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """(steps, features) array of one series -> (steps, 2) onset/wakeup scores per step."""
    n_steps = len(features)
    device = torch.device(device)
    starts = window_starts(n_steps, length, stride)
    keep = _kept_weights(starts, max(n_steps, length), length, stride)
    total = np.zeros((max(n_steps, length), 2), dtype=np.float32)
    weight = np.zeros(max(n_steps, length), dtype=np.float32)
    x_all = features if n_steps >= length else _pad(features, length)
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    model.eval()
    for i in range(0, len(starts), batch_size):
        batch_starts = starts[i : i + batch_size]
        x = np.stack([x_all[s : s + length] for s in batch_starts])  # (batch, length, features)
        x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 2, 1))).to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            scores = model.predict_scores(x)  # (batch, length, 2)
        scores = scores.float().cpu().numpy()
        for j, s in enumerate(batch_starts):
            w = keep[i + j]
            total[s : s + length] += scores[j] * w[:, None]
            weight[s : s + length] += w
    return (total / np.maximum(weight, 1e-12)[:, None])[:n_steps]


def _pad(features: np.ndarray, length: int) -> np.ndarray:
    """Repeat the last step up to `length`: a short series looks like it stays as it ends."""
    return np.concatenate([features, np.repeat(features[-1:], length - len(features), axis=0)])


def pick_device() -> torch.device:
    """The GPU when there is one; on CPU, every core."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    return device
