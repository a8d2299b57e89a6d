"""MLPDecoder: the same small MLP applied to each frame."""

from __future__ import annotations

from torch import Tensor, nn

from sleepdetect.models.base import Decoder
from sleepdetect.models.registries import DECODERS


@DECODERS.register("MLPDecoder")
class MLPDecoder(Decoder):
    """No context of its own: the cheapest head, for when the 2-D network before it already
    sees enough, and a baseline that shows what the other decoders add."""

    check_params = {"hidden_size": 8, "num_layers": 1}

    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_channels
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), nn.GELU(), nn.Dropout(dropout)]
            width = hidden_size
        layers.append(nn.Linear(width, n_classes))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.transpose(1, 2))  # (batch, frames, n_classes)
