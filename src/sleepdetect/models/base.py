"""What every model, feature extractor and decoder promises, so the training loop stays generic.

Resolution convention: a model's `forward` returns outputs on a grid of
`ceil(steps / model.downsample_rate)` frames, frame `i` covering steps
`[i * downsample_rate, (i + 1) * downsample_rate)`. Targets are built on the same grid
(`sleepdetect.data.targets.build_targets(model.target_kind, ...,
downsample_rate=model.downsample_rate)`), so the loss never resamples. `predict_scores`
always answers at full step resolution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from sleepdetect.core.constants import EVENTS

CLASSES = ("sleep", *EVENTS)  # segmentation channels

DecoderFactory = Callable[[int, int], nn.Module]
"""(n_channels, n_classes) -> a decoder; a model calls it once it knows its channel count."""


def pad_steps(x: Tensor, multiple: int) -> Tensor:
    """Pad the last axis on the right (edge values) up to a multiple, so reshapes and strided
    layers see whole frames; callers crop back with `[..., :length]`."""
    extra = -x.shape[-1] % multiple
    if extra == 0:
        return x
    return F.pad(x, (0, extra), mode="replicate")


def upsample_frames(values: Tensor, n_steps: int, downsample_rate: int) -> Tensor:
    """(batch, frames, channels) on the frame grid -> (batch, n_steps, channels) per step.

    Linear interpolation between frame centres, so a peak at frame `i` stays centred on the
    steps it covers; the documented way back from any model's grid to full resolution.
    """
    if downsample_rate == 1:
        return values[:, :n_steps]
    v = values.transpose(1, 2)  # (batch, channels, frames)
    v = F.interpolate(v, scale_factor=float(downsample_rate), mode="linear", align_corners=False)
    return v[:, :, :n_steps].transpose(1, 2)  # (batch, n_steps, channels)


class FeatureExtractor(nn.Module):
    """Turns (batch, in_channels, steps) into an image (batch, out_chans, height, frames),
    frames = ceil(steps / downsample_rate). Subclasses set `out_chans` and `height` in
    `__init__` so models size their layers from the built extractor, never from params."""

    out_chans: int
    height: int
    downsample_rate: int

    check_params: ClassVar[dict[str, Any]] = {}
    """Small arguments for a quick build (tests, `models --check`); defaults when empty."""


class Decoder(nn.Module):
    """Turns sequence features (batch, n_channels, frames) into (batch, frames, n_classes)
    for any number of frames. Constructor: `(n_channels, n_classes, **own arguments)`."""

    check_params: ClassVar[dict[str, Any]] = {}


@dataclass
class SegmentationOutput:
    """Per-frame logits for [sleep, onset, wakeup]."""

    logits: Tensor  # (batch, frames, 3)


class SleepModel(nn.Module):
    """A plain nn.Module that also knows its targets, its loss and how to score steps.

    Class attributes tell `build_model` which components to pass in and the dataset which
    targets to build; `downsample_rate` (set in `__init__`) is the frame size of `forward`.
    """

    target_kind: ClassVar[str]
    uses_feature_extractor: ClassVar[bool] = False
    uses_decoder: ClassVar[bool] = False
    check_params: ClassVar[dict[str, Any]] = {}
    requires: ClassVar[tuple[str, ...]] = ()
    """Optional packages the model imports when built (e.g. "transformers")."""
    downsample_rate: int

    def loss(self, output: Any, targets: dict[str, Tensor]) -> Tensor:
        """Scalar training loss of `forward`'s output against batched targets."""
        raise NotImplementedError

    def scores(self, output: Any, n_steps: int) -> Tensor:
        """`forward`'s output -> (batch, n_steps, 2) onset/wakeup probabilities per step, in
        float32 even under autocast (scores are ranked across series; half precision ties)."""
        raise NotImplementedError

    def predict_scores(self, x: Tensor) -> Tensor:
        """(batch, features, steps) -> (batch, steps, 2) onset/wakeup probabilities per step."""
        return self.scores(self(x), x.shape[-1])


class SegmentationModel(SleepModel):
    """Models whose output is per-frame logits for [sleep, onset, wakeup], trained against
    soft targets (interval membership and Gaussian peaks) with binary cross-entropy."""

    target_kind = "segmentation"
    event_weight: float = 1.0
    """Loss weight of the onset/wakeup channels against sleep: events are rare, and a model
    that learns the sleep state first may otherwise leave the event peaks flat for long."""

    def loss(self, output: SegmentationOutput, targets: dict[str, Tensor]) -> Tensor:
        logits = output.logits.float()  # float32 even under autocast: sums over many frames
        w = logits.new_tensor([1.0, self.event_weight, self.event_weight])  # (3,) per class
        return F.binary_cross_entropy_with_logits(logits, targets["labels"].float(), weight=w)

    def scores(self, output: SegmentationOutput, n_steps: int) -> Tensor:
        probs = output.logits[..., 1:].float().sigmoid()  # (batch, frames, 2)
        return upsample_frames(probs, n_steps, self.downsample_rate)  # (batch, steps, 2)
