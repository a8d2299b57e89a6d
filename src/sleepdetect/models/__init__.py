"""Models: feature extractors, decoders and model families, each found by name in a registry.

`build_model(cfg.model, in_channels)` builds what a params file names; `python -m sleepdetect
models [--check]` lists (and tries) everything registered. Every module of this package is
imported here, so a class registered in a new file is available by name at once. The
package is `build_model` and the registries; the components live one to a file.
"""

from __future__ import annotations

from sleepdetect.models.base import (
    DecoderFactory,
    FeatureExtractor,
    SegmentationOutput,
    SleepModel,
    upsample_frames,
)
from sleepdetect.models.build import build_model
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
    "upsample_frames",
]

import_all(__name__, __path__)  # every component module registers itself on import
