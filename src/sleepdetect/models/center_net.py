"""CenterNet: event centres as heatmap peaks, refined by sub-frame offsets, with a size head."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from sleepdetect.models.base import (
    EVENTS,
    DecoderFactory,
    FeatureExtractor,
    SleepModel,
    upsample_frames,
)
from sleepdetect.models.registries import MODELS
from sleepdetect.models.smp_unet2d import SpectrogramUNet


@dataclass
class CenterNetOutput:
    """Per-frame heads for [onset, wakeup]."""

    heatmap: Tensor  # (batch, frames, 2) logits: an event is centred in this frame
    offset: Tensor  # (batch, frames, 2) in (0, 1): where in the frame, as a fraction of its steps
    size: Tensor  # (batch, frames, 2) log1p of the steps to the paired event (sleep length)


def focal_heatmap_loss(logits: Tensor, target: Tensor, alpha: float, beta: float) -> Tensor:
    """CenterNet's penalty-reduced focal loss: frames near a peak (target close to 1) are
    barely punished for firing, so the model learns the peak, not an exact one-hot."""
    pos = target >= 1.0 - 1e-6
    p = logits.sigmoid()
    pos_loss = -((1 - p) ** alpha) * F.logsigmoid(logits)
    neg_loss = -((1 - target) ** beta) * p**alpha * F.logsigmoid(-logits)
    total = torch.where(pos, pos_loss, neg_loss).sum()
    return total / pos.sum().clamp_min(1)


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute error over the frames the mask marks (zero when none are marked)."""
    mask = mask.to(pred.dtype)
    return ((pred - target).abs() * mask).sum() / mask.sum().clamp_min(1)


@MODELS.register("CenterNet")
class CenterNet(SleepModel):
    """Same backbone as Spec2DCNN, but the decoder predicts, per frame and event type, a
    heatmap, the event's offset inside the frame and the sleep length (size). Events are
    points, so CenterNet's point-detection losses fit them better than cross-entropy on
    smoothed labels, and the offset recovers step precision lost to downsampling."""

    target_kind = "centernet"
    uses_feature_extractor = True
    uses_decoder = True
    check_params = {"encoder_depth": 3}

    def __init__(
        self,
        feature_extractor: FeatureExtractor,
        decoder: DecoderFactory,
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] | None = None,
        offset_weight: float = 1.0,
        size_weight: float = 0.1,
        focal_alpha: float = 2.0,
        focal_beta: float = 4.0,
    ) -> None:
        super().__init__()
        self.downsample_rate = feature_extractor.downsample_rate
        self.backbone = SpectrogramUNet(
            feature_extractor, encoder_name, encoder_weights, encoder_depth, decoder_channels
        )
        self.decoder = decoder(feature_extractor.height, 3 * len(EVENTS))
        self.offset_weight = offset_weight
        self.size_weight = size_weight
        self.focal_alpha = focal_alpha
        self.focal_beta = focal_beta

    def forward(self, x: Tensor) -> CenterNetOutput:
        feat = self.backbone(x)  # (batch, height, frames)
        out = self.decoder(feat)  # (batch, frames, 6)
        heatmap, offset, size = out.split(len(EVENTS), dim=-1)  # 3 x (batch, frames, 2)
        return CenterNetOutput(heatmap, offset.sigmoid(), size)  # 3 x (batch, frames, 2)

    def loss(self, output: CenterNetOutput, targets: dict[str, Tensor]) -> Tensor:
        out = CenterNetOutput(output.heatmap.float(), output.offset.float(), output.size.float())
        heat = focal_heatmap_loss(
            out.heatmap, targets["heatmap"], self.focal_alpha, self.focal_beta
        )
        offset = masked_l1(out.offset, targets["offset"], targets["mask"])
        size = masked_l1(out.size, targets["size"], targets["size_mask"])
        return heat + self.offset_weight * offset + self.size_weight * size

    def scores(self, output: CenterNetOutput, n_steps: int) -> Tensor:
        """Each frame's heatmap score lands on the step its offset points to; between those
        steps a slightly lowered interpolated heatmap keeps the curve smooth, so the refined
        step is the local maximum that peak finding picks."""
        rate = self.downsample_rate
        heat = output.heatmap.float().sigmoid()  # (batch, frames, 2)
        frames = heat.shape[1]
        start = torch.arange(frames, device=heat.device, dtype=heat.dtype).mul(rate)  # (frames,)
        shift = output.offset.float() * rate  # (batch, frames, 2) steps into the frame
        step = (start[None, :, None] + shift).round().long()  # (batch, frames, 2)
        step = step.clamp(0, n_steps - 1)  # (batch, frames, 2)
        base = upsample_frames(heat, n_steps, rate) * (1.0 - 1e-3)  # (batch, steps, 2)
        return base.scatter_reduce(1, step, heat, "amax")  # (batch, steps, 2)
