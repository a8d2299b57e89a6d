"""Small building blocks shared by several components."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_positions(length: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(length, dim) fixed sine/cosine codes of the frame index: position information for
    attention layers at any sequence length, with nothing learned that would fix the length."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    half = (dim + 1) // 2
    freq = torch.exp(
        torch.arange(half, device=device, dtype=torch.float32) * (-math.log(10000.0) / half)
    )
    angles = position * freq  # (length, half)
    codes = torch.cat([angles.sin(), angles.cos()], dim=1)[:, :dim]  # (length, dim)
    return codes.to(dtype)


def add_positions(h: Tensor) -> Tensor:
    """(batch, length, dim) + the sinusoidal codes of each position."""
    codes = sinusoidal_positions(h.shape[1], h.shape[2], h.device, h.dtype)  # (length, dim)
    return h + codes  # (batch, length, dim)


def transformer_encoder(
    d_model: int, nhead: int, num_layers: int, dropout: float, dim_feedforward: int | None = None
) -> nn.TransformerEncoder:
    """The encoder stack the attention decoders share: pre-norm layers (stable to train without
    warm-up), batch first, feed-forward 4 x d_model unless given. Nested tensors are off: they
    only help with padding masks, which frames never need, and pre-norm layers warn about them."""
    layer = nn.TransformerEncoderLayer(
        d_model,
        nhead,
        dim_feedforward=dim_feedforward or 4 * d_model,
        dropout=dropout,
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
