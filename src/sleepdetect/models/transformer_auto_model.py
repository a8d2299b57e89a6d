"""TransformerAutoModel: any Hugging Face encoder, built offline from a JSON config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from sleepdetect.models.base import CLASSES, FeatureExtractor, SegmentationModel, SegmentationOutput
from sleepdetect.models.registries import MODELS

CONFIG_DIR = Path(__file__).with_name("configs")


def shipped_configs() -> list[str]:
    """Names of the Hugging Face configs that ship in models/configs/ (file stems)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def read_hf_config(config: str) -> dict[str, Any]:
    """`config` is a shipped name (see `shipped_configs`) or a path to a config.json."""
    path = Path(config) if config.endswith(".json") else CONFIG_DIR / f"{config}.json"
    if not path.is_file():
        raise ValueError(
            f"TransformerAutoModel config {config!r} not found: give one of "
            f"{', '.join(shipped_configs())} or a path to a .json file"
        )
    raw = json.loads(path.read_text())
    if "model_type" not in raw:
        raise ValueError(f"{path} has no 'model_type' (e.g. \"modernbert\"); add one")
    return raw


def transformers_available() -> bool:
    try:
        import transformers  # noqa: F401  (the optional extra `.[transformers]`)
    except ImportError:
        return False
    return True


@MODELS.register("TransformerAutoModel")
class TransformerAutoModel(SegmentationModel):
    """Extractor features per frame -> `transformers.AutoModel` (randomly initialised from a
    config, never downloaded) -> per-frame logits. Lets any architecture of the transformers
    library be tried by shipping a JSON file. The default, a small ModernBERT, uses rotary
    positions and local attention, so it takes windows of any length. Needs the optional
    `transformers` extra."""

    uses_feature_extractor = True
    requires = ("transformers",)
    check_params = {
        "overrides": {
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "local_attention": 16,
        }
    }

    def __init__(
        self,
        feature_extractor: FeatureExtractor,
        config: str = "modernbert_small",
        overrides: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        try:
            import transformers  # the optional extra `.[transformers]`
        except ImportError as e:
            raise ImportError(
                "TransformerAutoModel needs the optional `transformers` package: "
                "pip install -e '.[transformers]'"
            ) from e
        raw = {**read_hf_config(config), **(overrides or {})}
        model_type = raw.pop("model_type")
        hf_config = transformers.AutoConfig.for_model(model_type, **raw)
        self.feature_extractor = feature_extractor
        self.downsample_rate = feature_extractor.downsample_rate
        self.backbone = transformers.AutoModel.from_config(hf_config)
        hidden = hf_config.hidden_size
        self.proj = nn.Linear(feature_extractor.out_chans * feature_extractor.height, hidden)
        self.head = nn.Linear(hidden, len(CLASSES))

    def forward(self, x: Tensor) -> SegmentationOutput:
        img = self.feature_extractor(x)  # (batch, out_chans, height, frames)
        seq = self.proj(img.flatten(1, 2).transpose(1, 2))  # (batch, frames, hidden)
        h = self.backbone(inputs_embeds=seq).last_hidden_state  # (batch, frames, hidden)
        return SegmentationOutput(self.head(h))  # logits (batch, frames, 3)
