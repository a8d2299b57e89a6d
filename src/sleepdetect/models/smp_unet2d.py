"""SmpUNet2D: a segmentation-models-pytorch Unet that accepts images of any size."""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
import torch.nn.functional as F
from torch import Tensor, nn

from sleepdetect.models.base import FeatureExtractor


class SmpUNet2D(nn.Module):
    """Wraps `smp.Unet` for spectrogram images: pads height and width up to the encoder's
    output stride and crops back, so windows need not be powers of two. Any smp encoder name
    works (including timm's `tu-...`); `encoder_weights` defaults to None so nothing is ever
    downloaded (the Kaggle kernel is offline)."""

    def __init__(
        self,
        in_channels: int,
        classes: int,
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if decoder_channels is None:  # smp's defaults at depth 5, halving per level
            decoder_channels = [16 * 2**i for i in reversed(range(encoder_depth))]
        self.unet = smp.Unet(
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            encoder_depth=encoder_depth,
            decoder_channels=tuple(decoder_channels),
            in_channels=in_channels,
            classes=classes,
        )
        self.stride = int(getattr(self.unet.encoder, "output_stride", 2**encoder_depth))
        # smp keeps the encoder stages past encoder_depth, which forward never reaches: frozen,
        # they expect no gradient, and DDP (which refuses parameters without one) can train.
        stages = getattr(self.unet.encoder, "get_stages", dict)()
        for stage_stride, modules in stages.items():
            if stage_stride > 2**encoder_depth:
                for module in modules:
                    module.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]  # x: (batch, chans, height, width)
        pad_h, pad_w = -height % self.stride, -width % self.stride  # up to the encoder stride
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")  # (batch, chans, height', width')
        y = self.unet(x)  # (batch, classes, height', width')
        return y[..., :height, :width]  # (batch, classes, height, width)


class SpectrogramUNet(nn.Module):
    """Feature extractor -> SmpUNet2D with one output map, read back as a sequence: the image
    backbone that Spec2DCNN, CenterNet and DETR2DCNN share. `height` is the number of channels
    of the sequence it returns, for the head that follows."""

    def __init__(
        self,
        feature_extractor: FeatureExtractor,
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.feature_extractor = feature_extractor
        self.height = feature_extractor.height
        self.unet = SmpUNet2D(
            feature_extractor.out_chans,
            classes=1,
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            encoder_depth=encoder_depth,
            decoder_channels=decoder_channels,
        )

    def forward(self, x: Tensor) -> Tensor:
        img = self.feature_extractor(x)  # (batch, out_chans, height, frames)
        return self.unet(img).squeeze(1)  # (batch, height, frames)
