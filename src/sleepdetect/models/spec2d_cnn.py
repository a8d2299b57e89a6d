"""Spec2DCNN: the reference solution's model (public LB 0.714)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from sleepdetect.models.base import (
    CLASSES,
    DecoderFactory,
    FeatureExtractor,
    SegmentationModel,
    SegmentationOutput,
)
from sleepdetect.models.registries import MODELS
from sleepdetect.models.smp_unet2d import SpectrogramUNet


@MODELS.register("Spec2DCNN")
class Spec2DCNN(SegmentationModel):
    """Feature extractor -> image -> 2-D Unet (one output channel) -> sequence decoder.

    Treating the spectrogram as an image lets an ImageNet-style encoder find patterns across
    time scales; the Unet's single output map is read as (height channels x frames) by the
    1-D decoder, which gives per-frame [sleep, onset, wakeup] logits.
    """

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
    ) -> None:
        super().__init__()
        self.downsample_rate = feature_extractor.downsample_rate
        self.backbone = SpectrogramUNet(
            feature_extractor, encoder_name, encoder_weights, encoder_depth, decoder_channels
        )
        self.decoder = decoder(feature_extractor.height, len(CLASSES))

    def forward(self, x: Tensor) -> SegmentationOutput:
        feat = self.backbone(x)  # (batch, height, frames)
        logits = self.decoder(feat)  # (batch, frames, 3)
        return SegmentationOutput(logits)  # logits (batch, frames, 3)
