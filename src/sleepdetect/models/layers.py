"""Small building blocks shared by several components."""

from __future__ import annotations

import math

import torch
from torch import Tensor


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
