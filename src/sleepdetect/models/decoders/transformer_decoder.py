"""TransformerDecoder: self-attention over frames with sinusoidal positions."""

from __future__ import annotations

from torch import Tensor, nn

from sleepdetect.models.base import Decoder
from sleepdetect.models.layers import add_positions, transformer_encoder
from sleepdetect.models.registries import DECODERS


@DECODERS.register("TransformerDecoder")
class TransformerDecoder(Decoder):
    """Every frame attends to every other, so distant evidence (the whole night) weighs in
    directly; fixed sinusoidal codes give order without fixing the sequence length.
    (Named a decoder for its place in the pipeline; internally it is an encoder stack.)"""

    check_params = {"d_model": 16, "nhead": 2, "num_layers": 1}

    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.proj = nn.Linear(n_channels, d_model)
        self.encoder = transformer_encoder(d_model, nhead, num_layers, dropout, dim_feedforward)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.proj(x.transpose(1, 2))  # (batch, frames, d_model)
        h = add_positions(h)  # (batch, frames, d_model)
        h = self.encoder(h)  # (batch, frames, d_model)
        return self.head(self.norm(h))  # (batch, frames, n_classes)
