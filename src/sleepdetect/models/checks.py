"""Quick builds of every registered combination, shared by `models --check`, the tests and
bench/models.py, so a component is exercised the day it is registered."""

from __future__ import annotations

import importlib.util
import time
import traceback
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sleepdetect.config import ModelConfig
from sleepdetect.data.targets import WindowEvents, build_targets
from sleepdetect.models.base import SleepModel
from sleepdetect.models.build import build_model
from sleepdetect.models.registries import DECODERS, FEATURE_EXTRACTORS, MODELS


@dataclass(frozen=True)
class Combination:
    """A model with the feature extractor and decoder it takes (None where it takes none)."""

    model: str
    feature_extractor: str | None = None
    decoder: str | None = None

    @property
    def id(self) -> str:
        return "+".join(p for p in (self.model, self.feature_extractor, self.decoder) if p)


def valid_combinations() -> list[Combination]:
    """Every registered model crossed with every extractor and decoder it can take."""
    out = []
    for name in MODELS.names():
        cls = MODELS.get(name)
        extractors = FEATURE_EXTRACTORS.names() if cls.uses_feature_extractor else [None]
        decoders = DECODERS.names() if cls.uses_decoder else [None]
        out += [Combination(name, fe, dec) for fe in extractors for dec in decoders]
    return out


def missing_requirement(model_cls: type[SleepModel]) -> str | None:
    """The first optional package the model needs that is not installed, if any."""
    for package in model_cls.requires:
        if importlib.util.find_spec(package) is None:
            return package
    return None


def check_config(
    combo: Combination, encoder_name: str = "resnet18", downsample_rate: int = 2
) -> ModelConfig:
    """A small build of `combo`: each class's `check_params` and a small smp encoder."""
    defaults = ModelConfig()
    fe = combo.feature_extractor or defaults.feature_extractor
    dec = combo.decoder or defaults.decoder
    return ModelConfig(
        name=combo.model,
        feature_extractor=fe,
        decoder=dec,
        encoder_name=encoder_name,
        downsample_rate=downsample_rate,
        params=dict(MODELS.get(combo.model).check_params),
        feature_extractor_params=dict(FEATURE_EXTRACTORS.get(fe).check_params)
        if combo.feature_extractor
        else {},
        decoder_params=dict(DECODERS.get(dec).check_params) if combo.decoder else {},
    )


def example_events(n_steps: int, shift: int = 0) -> WindowEvents:
    """One complete night in the middle of the window and an onset near its end."""
    onset, wakeup = int(0.2 * n_steps) + shift, int(0.6 * n_steps) + shift
    late = int(0.85 * n_steps) + shift
    return WindowEvents(
        n_steps=n_steps,
        onsets=(onset, late),
        wakeups=(wakeup,),
        sleep_intervals=((onset, wakeup), (late, late + n_steps)),
    )


def example_batch(
    model: SleepModel,
    n_steps: int,
    batch: int = 2,
    in_channels: int = 4,
    sigma: float = 10.0,
    seed: int = 0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Random inputs (batch, in_channels, n_steps) and the model's own kind of targets for a
    few events per window, as the dataset will batch them."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, n_steps, generator=generator)
    per_window = [
        build_targets(
            model.target_kind,
            example_events(n_steps, shift=7 * b),
            downsample_rate=model.downsample_rate,
            sigma=sigma,
        )
        for b in range(batch)
    ]
    targets = {k: torch.from_numpy(np.stack([t[k] for t in per_window])) for k in per_window[0]}
    return x, targets


@dataclass
class CheckResult:
    params: str = "-"
    seconds: float = 0.0
    error: str | None = None
    skipped: str | None = None


def run_check(combo: Combination, n_steps: int = 777, in_channels: int = 4) -> CheckResult:
    """Build `combo` small, run forward, loss and backward, and say how it went."""
    missing = missing_requirement(MODELS.get(combo.model))
    if missing:
        return CheckResult(skipped=f"needs {missing}")
    start = time.perf_counter()
    try:
        torch.manual_seed(0)
        model = build_model(check_config(combo), in_channels)
        x, targets = example_batch(model, n_steps, in_channels=in_channels)
        loss = model.loss(model(x), targets)
        loss.backward()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()}")
        params = f"{sum(p.numel() for p in model.parameters()):,}"
    except Exception as e:  # noqa: BLE001 - the check reports every failure instead of stopping
        last = traceback.extract_tb(e.__traceback__)[-1]
        return CheckResult(
            seconds=time.perf_counter() - start,
            error=f"{type(e).__name__}: {e} [{last.filename}:{last.lineno}]",
        )
    return CheckResult(params=params, seconds=time.perf_counter() - start)
