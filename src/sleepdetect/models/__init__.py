"""Models: feature extractors, decoders and model families, each found by name in a registry.

`build_model(cfg.model, in_channels)` builds what a params file names; `python -m sleepdetect
models [--check]` lists (and tries) everything registered. Every module of this package is
imported here, so a class registered in a new file is available by name at once.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from sleepdetect.config import ConfigError, ModelConfig
from sleepdetect.models.base import (
    DecoderFactory,
    FeatureExtractor,
    SegmentationOutput,
    SleepModel,
    upsample_frames,
)
from sleepdetect.models.registries import DECODERS, FEATURE_EXTRACTORS, MODELS, import_all

__all__ = [
    "DECODERS",
    "FEATURE_EXTRACTORS",
    "MODELS",
    "DecoderFactory",
    "FeatureExtractor",
    "SegmentationOutput",
    "SleepModel",
    "build_model",
    "models_command",
    "upsample_frames",
]

# Arguments build_model supplies itself, and where each comes from; params must not set them.
_SOURCES = {
    "in_channels": "the number of input features (prepare.features)",
    "downsample_rate": "model.downsample_rate",
    "encoder_name": "model.encoder_name",
    "encoder_weights": "model.encoder_weights",
    "feature_extractor": "model.feature_extractor",
    "decoder": "model.decoder",
    "n_channels": "the model that uses the decoder",
    "n_classes": "the model that uses the decoder",
}
_MODEL_SUPPLIED = (
    "in_channels",
    "downsample_rate",
    "encoder_name",
    "encoder_weights",
    "feature_extractor",
    "decoder",
)
_EXTRACTOR_SUPPLIED = ("in_channels", "downsample_rate")
_DECODER_SUPPLIED = ("n_channels", "n_classes")


def _arguments(cls: type) -> dict[str, inspect.Parameter]:
    params = dict(inspect.signature(cls).parameters)
    return {k: p for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _checked(
    cls: type, name: str, given: dict[str, Any], supplied: tuple[str, ...], key: str
) -> dict[str, Any]:
    """`given` if every key is an argument of `cls` that the user may set, else a ConfigError
    that names the key and lists the valid ones."""
    accepted = _arguments(cls)
    settable = [k for k in accepted if k not in supplied]
    for k in given:
        if k in supplied:
            raise ConfigError(
                f"{key}.{k}: {name} gets {k!r} from {_SOURCES[k]}; remove it from {key}"
            )
        if k not in accepted:
            raise ConfigError(
                f"{key}: {name} has no argument {k!r}; valid: {', '.join(settable) or '(none)'}"
            )
    return dict(given)


def build_model(model_cfg: ModelConfig, in_channels: int) -> SleepModel:
    """The model `model_cfg` names, with its feature extractor and decoder looked up in the
    registries. `in_channels` is the number of input features; every model works for any
    window length, so none is asked for. Unknown names list the valid ones."""
    if model_cfg.downsample_rate < 1:
        raise ConfigError(f"model.downsample_rate must be >= 1, got {model_cfg.downsample_rate}")
    model_cls = MODELS.get(model_cfg.name)
    rate = model_cfg.downsample_rate
    supplied: dict[str, Any] = {
        "in_channels": in_channels,
        "downsample_rate": rate,
        "encoder_name": model_cfg.encoder_name,
        "encoder_weights": model_cfg.encoder_weights,
    }
    if model_cls.uses_feature_extractor:
        fe_cls = FEATURE_EXTRACTORS.get(model_cfg.feature_extractor)
        fe_kwargs = _checked(
            fe_cls,
            model_cfg.feature_extractor,
            model_cfg.feature_extractor_params,
            _EXTRACTOR_SUPPLIED,
            "model.feature_extractor_params",
        )
        supplied["feature_extractor"] = fe_cls(
            in_channels=in_channels, downsample_rate=rate, **fe_kwargs
        )
    if model_cls.uses_decoder:
        dec_cls = DECODERS.get(model_cfg.decoder)
        dec_kwargs = _checked(
            dec_cls,
            model_cfg.decoder,
            model_cfg.decoder_params,
            _DECODER_SUPPLIED,
            "model.decoder_params",
        )
        supplied["decoder"] = functools.partial(dec_cls, **dec_kwargs)
    kwargs = _checked(model_cls, model_cfg.name, model_cfg.params, _MODEL_SUPPLIED, "model.params")
    accepted = _arguments(model_cls)
    return model_cls(**{k: v for k, v in supplied.items() if k in accepted}, **kwargs)


# ---------------------------------------------------------------- `python -m sleepdetect models`


def _n_params(module: Any) -> str:
    return f"{sum(p.numel() for p in module.parameters()):,}"


def _needs(model_cls: type[SleepModel]) -> str:
    parts = [
        p
        for p, used in (
            ("feature_extractor", model_cls.uses_feature_extractor),
            ("decoder", model_cls.uses_decoder),
        )
        if used
    ]
    return " + ".join(parts) or "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def models_command(check: bool = False) -> int:
    """List every registered component with its parameter count at default arguments (4 input
    features, downsample 2) and, for models, the targets it trains on. `check`: build each valid
    combination small, run forward + loss + backward on 777 steps and print how it went."""
    from sleepdetect.models.checks import missing_requirement, run_check, valid_combinations

    fe_rows = [["feature extractor", "params (4 features)", "image (chans x height)"]]
    for name in FEATURE_EXTRACTORS.names():
        fe = FEATURE_EXTRACTORS.build(name, in_channels=4, downsample_rate=2)
        fe_rows.append([name, _n_params(fe), f"{fe.out_chans} x {fe.height}"])
    dec_rows = [["decoder", "params (64 ch -> 3)"]]
    for name in DECODERS.names():
        dec_rows.append([name, _n_params(DECODERS.build(name, n_channels=64, n_classes=3))])
    model_rows = [["model", "params (defaults)", "targets", "takes"]]
    for name in MODELS.names():
        cls = MODELS.get(name)
        missing = missing_requirement(cls)
        params = (
            f"needs {missing}" if missing else _n_params(build_model(ModelConfig(name=name), 4))
        )
        model_rows.append([name, params, cls.target_kind, _needs(cls)])
    print(_table(model_rows), _table(fe_rows), _table(dec_rows), sep="\n\n")
    if not check:
        return 0

    print("\ncheck: each combination built small, forward + loss + backward on (2, 4, 777)")
    torch.set_num_threads(1)  # tiny builds gain nothing from threads; on busy CPUs they spin
    rows = [["combination", "params", "result", "seconds"]]
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    for combo in valid_combinations():
        r = run_check(combo)
        if r.skipped:
            result, counts["skipped"] = f"skipped ({r.skipped})", counts["skipped"] + 1
        elif r.error:
            result, counts["failed"] = f"FAILED: {r.error}", counts["failed"] + 1
        else:
            result, counts["ok"] = "ok", counts["ok"] + 1
        rows.append([combo.id, r.params, result, f"{r.seconds:.2f}"])
    print(_table(rows))
    print("\n" + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 1 if counts["failed"] else 0


# last, so that modules importing `build_model` from here (checks.py) find it defined
import_all(__name__, __path__)
