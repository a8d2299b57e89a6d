"""Spec1D: feature extractor straight into a sequence decoder, no 2-D network."""

from __future__ import annotations

from torch import Tensor

from sleepdetect.models.base import (
    CLASSES,
    DecoderFactory,
    FeatureExtractor,
    SegmentationModel,
    SegmentationOutput,
)
from sleepdetect.models.registries import MODELS


@MODELS.register("Spec1D")
class Spec1D(SegmentationModel):
    """Flattens the extractor's image into (channels x height) features per frame and lets
    the decoder do all the work: much cheaper than Spec2DCNN, and a check of what the 2-D
    Unet adds."""

    uses_feature_extractor = True
    uses_decoder = True

    def __init__(self, feature_extractor: FeatureExtractor, decoder: DecoderFactory) -> None:
        super().__init__()
        self.feature_extractor = feature_extractor
        self.downsample_rate = feature_extractor.downsample_rate
        self.decoder = decoder(feature_extractor.out_chans * feature_extractor.height, len(CLASSES))

    def forward(self, x: Tensor) -> SegmentationOutput:
        img = self.feature_extractor(x)  # (batch, out_chans, height, frames)
        seq = img.flatten(1, 2)  # (batch, out_chans * height, frames)
        return SegmentationOutput(self.decoder(seq))  # logits (batch, frames, 3)
