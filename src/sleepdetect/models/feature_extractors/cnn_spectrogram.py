"""CNNSpectrogram: a learned spectrogram from parallel strided 1-D convolutions."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sleepdetect.data.targets import n_frames
from sleepdetect.models.base import FeatureExtractor
from sleepdetect.models.registries import FEATURE_EXTRACTORS


@FEATURE_EXTRACTORS.register("CNNSpectrogram")
class CNNSpectrogram(FeatureExtractor):
    """Each branch is a Conv1d with its own kernel size (its own time scale) and stride
    `downsample_rate`; its `base_filters` outputs act as frequency bins, and the branches are
    stacked as image channels. Unlike an STFT, the filters are learned for the task."""

    check_params = {"base_filters": 16, "kernel_sizes": (8, 4)}

    def __init__(
        self,
        in_channels: int,
        downsample_rate: int,
        base_filters: int = 64,
        kernel_sizes: Sequence[int] | None = None,
        sigmoid: bool = True,
    ) -> None:
        super().__init__()
        kernels = tuple(kernel_sizes) if kernel_sizes is not None else (32, 16, downsample_rate)
        if not kernels or min(kernels) < 1:
            raise ValueError(f"kernel_sizes must be positive integers, got {kernel_sizes!r}")
        self.downsample_rate = downsample_rate
        self.kernel_sizes = kernels
        self.out_chans = len(kernels)
        self.height = base_filters
        self.sigmoid = sigmoid
        self.branches = nn.ModuleList(
            nn.Conv1d(in_channels, base_filters, kernel_size=k, stride=downsample_rate)
            for k in kernels
        )

    def forward(self, x: Tensor) -> Tensor:
        frames = n_frames(x.shape[-1], self.downsample_rate)  # x: (batch, in_channels, steps)
        images = []  # out_chans x (batch, base_filters, frames)
        for kernel, conv in zip(self.kernel_sizes, self.branches, strict=True):
            # pad (or crop, when negative) so every branch yields exactly `frames` outputs,
            # centred on the frame it describes
            total = (frames - 1) * self.downsample_rate + kernel - x.shape[-1]  # steps to add
            left = max(total, 0) // 2  # of which on the left
            padded = F.pad(x, (left, total - left))  # (batch, in_channels, padded steps)
            images.append(conv(padded))  # (batch, base_filters, frames)
        img = torch.stack(images, dim=1)  # (batch, out_chans, base_filters, frames)
        return img.sigmoid() if self.sigmoid else img  # (batch, out_chans, height, frames)
