"""Augmentations of a training batch (windows and their frame labels alike): mixup, cutmix,
and nights played backwards."""

from __future__ import annotations

import numpy as np
import torch


def partners(n: int) -> torch.Tensor:
    """For each window of a batch the index of another one to mix it with (a random rotation,
    so no window is paired with itself once the batch has two)."""
    shift = int(torch.randint(1, n, ())) if n > 1 else 0
    return torch.arange(n).roll(shift)


def mixup(
    x: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each window with its partner and the labels alike, by lam ~ Beta(alpha, alpha)."""
    lam = float(np.random.beta(alpha, alpha))
    return lam * x + (1 - lam) * x[partner], lam * labels + (1 - lam) * labels[partner]


def cutmix(
    x: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor, alpha: float, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste a stretch of the partner window (a share 1 - lam, lam ~ Beta(alpha, alpha)) of
    whole frames; its labels follow frame by frame, so they are exact."""
    frames = labels.shape[1]
    cut = int(round((1 - float(np.random.beta(alpha, alpha))) * frames))
    a = int(np.random.randint(0, frames - cut + 1))
    x, labels = x.clone(), labels.clone()
    x[:, :, a * stride : (a + cut) * stride] = x[partner, :, a * stride : (a + cut) * stride]
    labels[:, a : a + cut] = labels[partner, a : a + cut]
    return x, labels


def reverse(
    x: torch.Tensor, labels: torch.Tensor, prob: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Play a share `prob` of the windows backwards: a night read in reverse falls asleep
    where it woke up, so the onset and wakeup targets swap (labels: sleep, onset, wakeup)."""
    flip = torch.rand(x.shape[0], device=x.device) < prob  # (batch,)
    if not flip.any():
        return x, labels
    x, labels = x.clone(), labels.clone()
    x[flip] = x[flip].flip(-1)  # (n, features, steps) in reverse
    labels[flip] = labels[flip].flip(1)[..., [0, 2, 1]]  # (n, frames, 3), events swapped
    return x, labels
