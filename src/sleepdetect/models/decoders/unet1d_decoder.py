"""UNet1DDecoder: a 1-D U-Net over frames, for any sequence length."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sleepdetect.models.base import Decoder, pad_steps
from sleepdetect.models.registries import DECODERS


class _DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        pad = kernel_size // 2
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
        )


@DECODERS.register("UNet1DDecoder")
class UNet1DDecoder(Decoder):
    """Halves the sequence `depth` times and merges back with skip connections, so each frame
    sees hours of context while keeping frame-level detail for sharp event peaks. The input is
    padded to a multiple of 2**depth inside and the output cropped: no length is fixed."""

    check_params = {"base_channels": 8, "depth": 2}

    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        base_channels: int = 64,
        depth: int = 3,
        kernel_size: int = 3,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep frames aligned, got {kernel_size}")
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.stem = _DoubleConv(n_channels, widths[0], kernel_size)
        self.downs = nn.ModuleList(
            _DoubleConv(widths[i], widths[i + 1], kernel_size) for i in range(depth)
        )
        self.ups = nn.ModuleList(
            _DoubleConv(widths[i + 1] + widths[i], widths[i], kernel_size) for i in range(depth)
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Conv1d(widths[0], n_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        frames = x.shape[-1]  # x: (batch, n_channels, frames)
        x = pad_steps(x, 2**self.depth)  # (batch, n_channels, padded frames)
        h = self.stem(x)  # (batch, base, padded frames)
        skips = []  # one (batch, width, length) per level
        for down in self.downs:
            skips.append(h)  # (batch, width, length)
            h = down(F.max_pool1d(h, 2))  # (batch, width * 2, length / 2)
        for up, skip in zip(reversed(self.ups), reversed(skips), strict=True):
            h = F.interpolate(h, size=skip.shape[-1], mode="linear")  # (batch, width, length)
            h = up(torch.cat([h, skip], dim=1))  # (batch, width / 2, length)
        logits = self.head(h)  # (batch, n_classes, padded frames)
        return logits[..., :frames].transpose(1, 2)  # (batch, frames, n_classes)
