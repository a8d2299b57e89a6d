"""LSTMFeatureExtractor: a recurrent front end whose hidden state is the image height."""

from __future__ import annotations

from torch import Tensor, nn

from sleepdetect.models.base import FeatureExtractor, pad_steps
from sleepdetect.models.registries import FEATURE_EXTRACTORS


@FEATURE_EXTRACTORS.register("LSTMFeatureExtractor")
class LSTMFeatureExtractor(FeatureExtractor):
    """A strided conv folds each frame's steps into one vector, then a (bi)LSTM gives every
    frame context from the whole window; its hidden units form a one-channel image."""

    check_params = {"hidden_size": 8, "num_layers": 1}

    def __init__(
        self,
        in_channels: int,
        downsample_rate: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        self.downsample_rate = downsample_rate
        self.fold = nn.Conv1d(
            in_channels, hidden_size, kernel_size=downsample_rate, stride=downsample_rate
        )
        self.lstm = nn.LSTM(
            hidden_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
        )
        self.out_chans = 1
        self.height = hidden_size * (2 if bidirectional else 1)

    def forward(self, x: Tensor) -> Tensor:
        x = pad_steps(x, self.downsample_rate)  # (batch, in_channels, frames * rate)
        h = self.fold(x).transpose(1, 2)  # (batch, frames, hidden)
        h, _ = self.lstm(h)  # (batch, frames, height)
        return h.transpose(1, 2).unsqueeze(1)  # (batch, 1, height, frames)
