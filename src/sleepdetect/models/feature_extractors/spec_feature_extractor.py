"""SpecFeatureExtractor: a fixed STFT spectrogram in decibels, computed with torch.stft."""

from __future__ import annotations

import torch
from torch import Tensor

from sleepdetect.data.targets import n_frames
from sleepdetect.models.base import FeatureExtractor
from sleepdetect.models.registries import FEATURE_EXTRACTORS


@FEATURE_EXTRACTORS.register("SpecFeatureExtractor")
class SpecFeatureExtractor(FeatureExtractor):
    """One STFT per input channel, hop `downsample_rate`, magnitude in dB clipped to `top_db`
    below the window's peak and standardised per channel. Nothing is learned: a stable,
    interpretable view of rhythms (e.g. the flat arm angle of sleep). Uses torch.stft, so it
    needs no torchaudio."""

    check_params = {"n_fft": 30}

    def __init__(
        self,
        in_channels: int,
        downsample_rate: int,
        n_fft: int = 126,
        top_db: float = 80.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if n_fft < 2:
            raise ValueError(f"n_fft must be at least 2, got {n_fft}")
        self.downsample_rate = downsample_rate
        self.n_fft = n_fft
        self.top_db = top_db
        self.normalize = normalize
        self.out_chans = in_channels
        self.height = n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, steps = x.shape  # x: (batch, channels, steps)
        frames = n_frames(steps, self.downsample_rate)  # frames of the output grid
        flat = x.reshape(batch * channels, steps).float()  # (batch * channels, steps)
        spec = torch.stft(
            flat,
            n_fft=self.n_fft,
            hop_length=self.downsample_rate,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (batch * channels, height, steps // hop + 1)
        power = spec.real.square() + spec.imag.square()  # (batch * channels, height, stft frames)
        db = 10.0 * torch.log10(power.clamp_min(1e-10))  # (batch * channels, height, stft frames)
        db = db[..., :frames]  # (batch * channels, height, frames)
        peak = db.amax(dim=(-2, -1), keepdim=True)  # (batch * channels, 1, 1)
        db = torch.maximum(db, peak - self.top_db)  # (batch * channels, height, frames)
        if self.normalize:
            mean = db.mean(dim=(-2, -1), keepdim=True)  # (batch * channels, 1, 1)
            std = db.std(dim=(-2, -1), keepdim=True)  # (batch * channels, 1, 1)
            db = (db - mean) / (std + 1e-5)  # (batch * channels, height, frames)
        db = db.reshape(batch, channels, self.height, frames)  # (batch, out_chans, height, frames)
        return db.to(x.dtype)
