"""PANNsFeatureExtractor: the learned and the fixed spectrogram side by side."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from sleepdetect.models.base import FeatureExtractor
from sleepdetect.models.feature_extractors.cnn_spectrogram import CNNSpectrogram
from sleepdetect.models.feature_extractors.spec_feature_extractor import SpecFeatureExtractor
from sleepdetect.models.registries import FEATURE_EXTRACTORS


@FEATURE_EXTRACTORS.register("PANNsFeatureExtractor")
class PANNsFeatureExtractor(FeatureExtractor):
    """Stacks a CNNSpectrogram and an STFT spectrogram as image channels (as PANNs combine
    learned and log-mel front ends), so the 2-D network can use whichever helps. The STFT size
    follows from `base_filters` (n_fft = 2 * (base_filters - 1)) so both have the same height."""

    check_params = {"base_filters": 16, "kernel_sizes": (8, 4)}

    def __init__(
        self,
        in_channels: int,
        downsample_rate: int,
        base_filters: int = 64,
        kernel_sizes: Sequence[int] | None = None,
        sigmoid: bool = True,
        top_db: float = 80.0,
    ) -> None:
        super().__init__()
        if base_filters < 2:
            raise ValueError(f"base_filters must be at least 2, got {base_filters}")
        self.downsample_rate = downsample_rate
        self.cnn = CNNSpectrogram(in_channels, downsample_rate, base_filters, kernel_sizes, sigmoid)
        self.spec = SpecFeatureExtractor(
            in_channels, downsample_rate, n_fft=2 * (base_filters - 1), top_db=top_db
        )
        self.out_chans = self.cnn.out_chans + self.spec.out_chans
        self.height = base_filters

    def forward(self, x: Tensor) -> Tensor:
        learned = self.cnn(x)  # (batch, n_kernels, height, frames)
        fixed = self.spec(x)  # (batch, in_channels, height, frames)
        return torch.cat([learned, fixed], dim=1)  # (batch, out_chans, height, frames)
