"""DayGRU: residual bidirectional GRUs over whole days at one-minute resolution."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sleepdetect.data.targets import n_frames
from sleepdetect.models.base import CLASSES, SegmentationModel, SegmentationOutput, pad_steps
from sleepdetect.models.registries import MODELS


class _ResidualGRU(nn.Module):
    def __init__(self, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * hidden_size, hidden_size)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        y, _ = self.gru(self.norm(h))  # (batch, frames, 2 * hidden)
        return h + self.drop(self.proj(y))  # (batch, frames, hidden)


EVENT_PRIOR_LOGIT = -4.0


@MODELS.register("DayGRU")
class DayGRU(SegmentationModel):
    """The family behind the winning solutions: a whole day in one window, folded to minutes
    (downsample_rate steps -> one vector, by reshape + linear, 12 steps = 1 minute), several
    residual bidirectional GRU layers that carry the sleep state across the day, and a linear
    head per minute. Recurrence over 1440 minutes is cheap and length-free, and a full day
    shows the model the daily rhythm. Outputs are per frame (one minute):
    labels sit on whole minutes, and minute-level targets are 12x fewer and smoother to learn
    than per-step ones; `scores` interpolates them back to every step."""

    check_params = {"hidden_size": 16, "num_layers": 2}

    def __init__(
        self,
        in_channels: int,
        downsample_rate: int = 12,
        hidden_size: int = 64,
        num_layers: int = 4,
        dropout: float = 0.1,
        event_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.downsample_rate = downsample_rate
        self.event_weight = event_weight
        self.fold = nn.Sequential(
            nn.Linear(in_channels * downsample_rate, hidden_size), nn.LayerNorm(hidden_size)
        )
        self.blocks = nn.Sequential(
            *(_ResidualGRU(hidden_size, dropout) for _ in range(num_layers))
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, len(CLASSES))
        with torch.no_grad():  # start events at their rarity (~2 %), not at 50 %
            self.head.bias[1:] = EVENT_PRIOR_LOGIT

    def forward(self, x: Tensor) -> SegmentationOutput:
        batch, channels, steps = x.shape  # x: (batch, channels, steps)
        rate = self.downsample_rate  # steps per frame (12 = one minute)
        frames = n_frames(steps, rate)  # frames the GRUs run over
        x = pad_steps(x, rate)  # (batch, channels, frames * rate)
        x = x.reshape(batch, channels, frames, rate)  # (batch, channels, frames, rate)
        x = x.permute(0, 2, 1, 3).flatten(2)  # (batch, frames, channels * rate)
        h = self.fold(x)  # (batch, frames, hidden)
        h = self.norm(self.blocks(h))  # (batch, frames, hidden)
        return SegmentationOutput(self.head(h))  # logits (batch, frames, 3)
