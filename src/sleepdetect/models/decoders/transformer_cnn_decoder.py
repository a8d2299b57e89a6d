"""TransformerCNNDecoder: convolutions for local shape, attention for long range."""

from __future__ import annotations

from torch import Tensor, nn

from sleepdetect.models.base import Decoder
from sleepdetect.models.layers import add_positions, transformer_encoder
from sleepdetect.models.registries import DECODERS


class _ConvBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm1d(channels)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.drop(self.act(self.norm(self.conv(x))))  # (batch, channels, frames)


@DECODERS.register("TransformerCNNDecoder")
class TransformerCNNDecoder(Decoder):
    """Residual convolutions before and after a transformer: the convolutions sharpen local
    transitions (where events are), attention relates them across the window, and the
    convolutions also give relative position on top of the sinusoidal codes."""

    check_params = {"d_model": 16, "nhead": 2, "num_layers": 1, "num_conv_layers": 1}

    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        num_conv_layers: int = 2,
        kernel_size: int = 5,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep frames aligned, got {kernel_size}")
        self.proj = nn.Conv1d(n_channels, d_model, 1)
        self.local_in = nn.Sequential(
            *(_ConvBlock(d_model, kernel_size, dropout) for _ in range(num_conv_layers))
        )
        self.encoder = transformer_encoder(d_model, nhead, num_layers, dropout)
        self.local_out = nn.Sequential(
            *(_ConvBlock(d_model, kernel_size, dropout) for _ in range(num_conv_layers))
        )
        self.head = nn.Conv1d(d_model, n_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.local_in(self.proj(x))  # (batch, d_model, frames)
        h = h.transpose(1, 2)  # (batch, frames, d_model)
        h = add_positions(h)  # (batch, frames, d_model)
        h = self.encoder(h).transpose(1, 2)  # (batch, d_model, frames)
        h = self.local_out(h)  # (batch, d_model, frames)
        return self.head(h).transpose(1, 2)  # (batch, frames, n_classes)
