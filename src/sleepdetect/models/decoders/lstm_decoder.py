"""LSTMDecoder: a bidirectional LSTM over frames."""

from __future__ import annotations

from torch import Tensor, nn

from sleepdetect.models.base import Decoder
from sleepdetect.models.registries import DECODERS


@DECODERS.register("LSTMDecoder")
class LSTMDecoder(Decoder):
    """Recurrence carries the sleep state along the night, which suits onset and wakeup, whose
    evidence is the change of state over long stretches rather than a local shape."""

    check_params = {"hidden_size": 8, "num_layers": 1}

    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        bidirectional: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(n_channels, hidden_size)
        self.lstm = nn.LSTM(
            hidden_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj(x.transpose(1, 2))  # (batch, frames, hidden)
        h, _ = self.lstm(h)  # (batch, frames, hidden * directions)
        return self.head(h)  # (batch, frames, n_classes)
