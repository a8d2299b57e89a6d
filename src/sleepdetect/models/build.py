"""`build_model`: a model config -> the model it names, with its feature extractor and decoder
from the registries, every key checked against the constructors."""

from __future__ import annotations

import functools
import inspect
from typing import Any

from sleepdetect.config import ConfigError, ModelConfig
from sleepdetect.models.base import SleepModel
from sleepdetect.models.registries import DECODERS, FEATURE_EXTRACTORS, MODELS

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
