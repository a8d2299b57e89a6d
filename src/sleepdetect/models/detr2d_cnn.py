"""DETR2DCNN: events as a set predicted by learned queries, matched with the Hungarian method."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from sleepdetect.models.base import EVENTS, FeatureExtractor, SleepModel
from sleepdetect.models.layers import add_positions
from sleepdetect.models.registries import MODELS
from sleepdetect.models.smp_unet2d import SpectrogramUNet

NO_EVENT = len(EVENTS)  # class index of "this query found nothing"


@dataclass
class DETROutput:
    """One prediction per query."""

    class_logits: Tensor  # (batch, queries, 3): [onset, wakeup, no event]
    positions: Tensor  # (batch, queries) in (0, 1): (event step + 0.5) / window steps


@MODELS.register("DETR2DCNN")
class DETR2DCNN(SleepModel):
    """Spec2DCNN's backbone as memory for a transformer decoder whose learned queries each
    predict at most one event (class + position). Training matches queries to true events one
    to one (scipy's linear_sum_assignment on class probability and distance), so the model
    outputs a few confident events instead of a curve that needs peak finding and suppression.
    """

    target_kind = "detr"
    uses_feature_extractor = True
    check_params = {
        "encoder_depth": 3,
        "d_model": 16,
        "nhead": 2,
        "num_layers": 1,
        "num_queries": 8,
    }

    def __init__(
        self,
        feature_extractor: FeatureExtractor,
        encoder_name: str = "resnet34",
        encoder_weights: str | None = None,
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] | None = None,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        num_queries: int = 16,
        dropout: float = 0.1,
        class_weight: float = 1.0,
        position_weight: float = 5.0,
        no_event_weight: float = 0.1,
        render_sigma: float = 4.0,
    ) -> None:
        super().__init__()
        self.downsample_rate = feature_extractor.downsample_rate
        self.backbone = SpectrogramUNet(
            feature_extractor, encoder_name, encoder_weights, encoder_depth, decoder_channels
        )
        self.memory_proj = nn.Conv1d(feature_extractor.height, d_model, 1)
        self.queries = nn.Embedding(num_queries, d_model)
        layer = nn.TransformerDecoderLayer(
            d_model,
            nhead,
            dim_feedforward=4 * d_model,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerDecoder(layer, num_layers)
        self.norm = nn.LayerNorm(d_model)
        self.class_head = nn.Linear(d_model, len(EVENTS) + 1)
        self.position_head = nn.Sequential(
            nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, 1)
        )
        self.num_queries = num_queries
        self.class_weight = class_weight
        self.position_weight = position_weight
        self.render_sigma = render_sigma
        class_weights = torch.ones(len(EVENTS) + 1)
        class_weights[NO_EVENT] = no_event_weight
        self.register_buffer("ce_weights", class_weights, persistent=False)

    def forward(self, x: Tensor) -> DETROutput:
        feat = self.backbone(x)  # (batch, height, frames)
        memory = self.memory_proj(feat).transpose(1, 2)  # (batch, frames, d_model)
        memory = add_positions(memory)  # (batch, frames, d_model)
        queries = self.queries.weight.expand(x.shape[0], -1, -1)  # (batch, queries, d_model)
        h = self.norm(self.transformer(queries, memory))  # (batch, queries, d_model)
        class_logits = self.class_head(h)  # (batch, queries, 3)
        positions = self.position_head(h).squeeze(-1).sigmoid()  # (batch, queries)
        return DETROutput(class_logits, positions)  # (batch, queries, 3), (batch, queries)

    @torch.no_grad()
    def match(self, output: DETROutput, targets: dict[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Per window, (query indices, event indices) of the cheapest one-to-one assignment:
        cost = -class_weight * p(true class) + position_weight * |position error|."""
        probs = output.class_logits.softmax(-1)  # (batch, queries, 3)
        pairs = []
        for b in range(probs.shape[0]):
            valid = targets["event_mask"][b].bool()  # (max_events,)
            classes = targets["event_class"][b][valid]  # (events,)
            positions = targets["event_position"][b][valid]  # (events,)
            if len(classes) > self.num_queries:
                raise ValueError(
                    f"a window has {len(classes)} events but DETR2DCNN has {self.num_queries} "
                    "queries; raise num_queries"
                )
            distance = (
                output.positions[b][:, None] - positions[None, :]
            ).abs()  # (queries, events)
            cost = self.position_weight * distance - self.class_weight * probs[b][:, classes]
            rows, cols = linear_sum_assignment(cost.float().cpu().numpy())
            pairs.append(
                (torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long))
            )
        return pairs

    def loss(self, output: DETROutput, targets: dict[str, Tensor]) -> Tensor:
        """Set loss: cross-entropy on every query (unmatched ones should say "no event", with a
        low weight because most queries are unmatched) + L1 on matched positions."""
        output = DETROutput(output.class_logits.float(), output.positions.float())
        pairs = self.match(output, targets)
        batch, queries = output.positions.shape
        device = output.positions.device
        target_classes = torch.full((batch, queries), NO_EVENT, dtype=torch.long, device=device)
        pred_pos, true_pos = [], []
        for b, (rows, cols) in enumerate(pairs):
            rows, cols = rows.to(device), cols.to(device)
            valid = targets["event_mask"][b].bool()
            target_classes[b, rows] = targets["event_class"][b][valid][cols].long()
            pred_pos.append(output.positions[b, rows])
            true_pos.append(targets["event_position"][b][valid][cols].to(output.positions.dtype))
        ce = F.cross_entropy(
            output.class_logits.reshape(batch * queries, -1),
            target_classes.reshape(-1),
            weight=self.ce_weights,
        )
        matched = torch.cat(pred_pos)
        l1 = (matched - torch.cat(true_pos)).abs().sum() / max(len(matched), 1)
        return self.class_weight * ce + self.position_weight * l1

    def scores(self, output: DETROutput, n_steps: int) -> Tensor:
        """Each query becomes a Gaussian peak (width `render_sigma` steps) at its step, as
        high as its class probability; overlapping peaks combine by maximum."""
        probs = output.class_logits.float().softmax(-1)[..., : len(EVENTS)]  # (batch, queries, 2)
        centres = output.positions.float() * n_steps - 0.5  # (batch, queries)
        steps = torch.arange(n_steps, device=centres.device, dtype=centres.dtype)  # (steps,)
        z = (steps - centres[..., None]) / self.render_sigma  # (batch, queries, steps)
        bump = torch.exp(-0.5 * z**2)  # (batch, queries, steps)
        peaks = bump.unsqueeze(-1) * probs.unsqueeze(2)  # (batch, queries, steps, 2)
        return peaks.amax(dim=1)  # (batch, steps, 2)
