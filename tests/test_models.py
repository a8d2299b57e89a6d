"""Every registered model combination: shapes, gradients, save/load, offline builds, learning.

The combinations come from the registries (`valid_combinations`), so a component is tested the
day it is registered; each builds small through its class's `check_params`.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import sys

import pytest
import torch

from sleepdetect.config import ConfigError, ModelConfig, load_config
from sleepdetect.core.registry import UnknownComponentError
from sleepdetect.models import DECODERS, FEATURE_EXTRACTORS, MODELS, build_model
from sleepdetect.models.base import upsample_frames
from sleepdetect.models.center_net import CenterNetOutput
from sleepdetect.models.checks import (
    Combination,
    check_config,
    example_batch,
    missing_requirement,
    valid_combinations,
)
from sleepdetect.models.detr2d_cnn import DETROutput

IN_CHANNELS = 4
COMBOS = valid_combinations()


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Every build and run in this module happens with sockets refused: nothing may download."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during a model test")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket, "socket", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and on a shared 2-core machine a second
    spinning thread makes runs many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def skip_if_missing(model_name: str) -> None:
    missing = missing_requirement(MODELS.get(model_name))
    if missing:
        pytest.skip(
            f"{model_name} needs the optional {missing!r} package: pip install -e '.[{missing}]'"
        )


def build(combo: Combination, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(check_config(combo), IN_CHANNELS)


@pytest.fixture(scope="module", params=COMBOS, ids=lambda c: c.id)
def combo(request) -> Combination:
    skip_if_missing(request.param.model)
    return request.param


@pytest.fixture(scope="module")
def model(combo) -> torch.nn.Module:
    """One small build per combination, shared by its tests (pytest groups them)."""
    return build(combo)


def expected_shapes(model, batch: int, frames: int) -> dict[str, tuple[int, ...]]:
    if model.target_kind == "segmentation":
        return {"logits": (batch, frames, 3)}
    if model.target_kind == "centernet":
        return {
            "heatmap": (batch, frames, 2),
            "offset": (batch, frames, 2),
            "size": (batch, frames, 2),
        }
    if model.target_kind == "detr":
        return {
            "class_logits": (batch, model.num_queries, 3),
            "positions": (batch, model.num_queries),
        }
    raise AssertionError(f"add the output shapes of target kind {model.target_kind!r} to this test")


def outputs(out) -> dict[str, torch.Tensor]:
    assert dataclasses.is_dataclass(out), "forward must return a small dataclass"
    return {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}


def test_sockets_are_blocked():
    with pytest.raises(OSError, match="network"):
        socket.socket()


def test_every_component_takes_part_in_some_combination():
    used = (
        {c.feature_extractor for c in COMBOS}
        | {c.decoder for c in COMBOS}
        | {c.model for c in COMBOS}
    )
    assert set(FEATURE_EXTRACTORS.names()) | set(DECODERS.names()) | set(MODELS.names()) <= used


@pytest.mark.parametrize("n_steps", [1000, 777])
def test_output_shapes_for_any_window_length(model, n_steps):
    model.eval()
    x = torch.randn(2, IN_CHANNELS, n_steps)
    with torch.no_grad():
        out = outputs(model(x))
        scores = model.predict_scores(x)
    frames = math.ceil(n_steps / model.downsample_rate)
    assert {k: tuple(v.shape) for k, v in out.items()} == expected_shapes(model, 2, frames)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert scores.shape == (2, n_steps, 2)
    assert torch.isfinite(scores).all() and scores.min() >= 0 and scores.max() <= 1


def test_loss_backward_gives_finite_gradients_down_to_the_input(model):
    model.train()
    model.zero_grad()
    x, targets = example_batch(model, 1000, in_channels=IN_CHANNELS)
    x.requires_grad_(True)
    out = model(x)
    if model.target_kind != "detr":  # per-frame targets are built on the model's output grid
        frames = math.ceil(1000 / model.downsample_rate)
        assert all(t.shape[:2] == (2, frames) for t in targets.values())
    loss = model.loss(out, targets)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f"DDP refuses trainable parameters the loss never reaches: {unused[:3]}"
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, (
        "the loss must depend on the input"
    )


def test_state_dict_round_trip_gives_identical_outputs(model, combo):
    model.eval()
    x = torch.randn(2, IN_CHANNELS, 777)
    fresh = build(combo, seed=1).eval()
    with torch.no_grad():
        before = outputs(model(x))
        assert not all(torch.allclose(before[k], v) for k, v in outputs(fresh(x)).items())
        fresh.load_state_dict(model.state_dict())
        after = outputs(fresh(x))
    for k in before:
        torch.testing.assert_close(after[k], before[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", MODELS.names())
def test_each_model_overfits_one_tiny_batch(name):
    """The loss, the targets and the model fit together: one batch is learned (loss / 10)."""
    skip_if_missing(name)
    cls = MODELS.get(name)
    fe = "CNNSpectrogram" if cls.uses_feature_extractor else None
    dec = "UNet1DDecoder" if cls.uses_decoder else None
    torch.manual_seed(0)
    cfg = check_config(Combination(name, fe, dec), downsample_rate=4)
    model = build_model(cfg, IN_CHANNELS).train()
    x, targets = example_batch(model, 256, in_channels=IN_CHANNELS, sigma=2.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = last = None
    for _ in range(300):
        loss = model.loss(model(x), targets)
        first = loss.item() if first is None else first
        last = loss.item()
        if last < first / 10:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert last < first / 10, f"{name}: loss went from {first:.4f} to {last:.4f} only"


@pytest.mark.parametrize("name", MODELS.names())
def test_scores_and_loss_are_float32_under_autocast(name):
    """Inference runs under autocast on GPUs: scores must stay float32 (they are ranked across
    series) and the loss finite. CPU bfloat16 autocast stands in for the GPU here."""
    skip_if_missing(name)
    cls = MODELS.get(name)
    fe = "CNNSpectrogram" if cls.uses_feature_extractor else None
    model = build(Combination(name, fe, "MLPDecoder" if cls.uses_decoder else None))
    x, targets = example_batch(model, 300, in_channels=IN_CHANNELS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(model(x), targets)
        with torch.no_grad():
            scores = model.eval().predict_scores(x)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert scores.dtype == torch.float32 and scores.shape == (2, 300, 2)


def test_reference_setup_with_resnet34():
    """params/exp001: Spec2DCNN + CNNSpectrogram + resnet34 Unet + UNet1DDecoder, downsample 2."""
    cfg = ModelConfig()
    assert (
        cfg.name,
        cfg.feature_extractor,
        cfg.encoder_name,
        cfg.decoder,
        cfg.downsample_rate,
    ) == ("Spec2DCNN", "CNNSpectrogram", "resnet34", "UNet1DDecoder", 2)
    assert cfg.encoder_weights is None
    model = build_model(cfg, IN_CHANNELS).eval()
    assert type(model.backbone.unet.unet.encoder).__name__ == "ResNetEncoder"
    assert len(model.backbone.unet.unet.encoder.layer2) == 4  # resnet34's (3, 4, 6, 3) blocks
    x = torch.randn(1, IN_CHANNELS, 1000)
    with torch.no_grad():
        assert model(x).logits.shape == (1, 500, 3)
        assert model.predict_scores(x).shape == (1, 1000, 2)


@pytest.mark.parametrize("encoder_name", ["mobilenet_v2", "tu-resnet10t"])
def test_any_smp_encoder_name_builds(encoder_name):
    combo = Combination("Spec2DCNN", "CNNSpectrogram", "MLPDecoder")
    cfg = dataclasses.replace(check_config(combo), encoder_name=encoder_name, params={})
    model = build_model(cfg, IN_CHANNELS).eval()
    with torch.no_grad():
        assert model(torch.randn(1, IN_CHANNELS, 300)).logits.shape == (1, 150, 3)


def test_params_file_sections_reach_the_components():
    cfg = load_config(
        sections={
            "model": {
                "name": "Spec1D",
                "feature_extractor": "CNNSpectrogram",
                "decoder": "LSTMDecoder",
                "downsample_rate": 4,
                "feature_extractor_params": {"base_filters": 8, "kernel_sizes": [8, 4]},
                "decoder_params": {"hidden_size": 5, "bidirectional": False},
            }
        }
    )
    model = build_model(cfg.model, 3)
    assert model.feature_extractor.kernel_sizes == (8, 4) and model.feature_extractor.height == 8
    assert model.decoder.lstm.hidden_size == 5 and model.downsample_rate == 4
    assert model.feature_extractor.branches[0].in_channels == 3  # from the data, not the config


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownComponentError, match="valid names: CenterNet, DETR2DCNN"):
        build_model(ModelConfig(name="Spec3DCNN"), IN_CHANNELS)
    with pytest.raises(UnknownComponentError, match="CNNSpectrogram, LSTMFeatureExtractor"):
        build_model(ModelConfig(feature_extractor="Wavelet"), IN_CHANNELS)
    with pytest.raises(UnknownComponentError, match="LSTMDecoder, MLPDecoder"):
        build_model(ModelConfig(decoder="GRUDecoder"), IN_CHANNELS)


def test_bad_component_arguments_name_the_key_and_the_valid_ones():
    with pytest.raises(
        ConfigError,
        match=r"model.decoder_params: UNet1DDecoder has no argument 'width'; valid: base_channels",
    ):
        build_model(ModelConfig(decoder_params={"width": 3}), IN_CHANNELS)
    with pytest.raises(ConfigError, match="model.params.downsample_rate"):
        build_model(ModelConfig(name="DayGRU", params={"downsample_rate": 3}), IN_CHANNELS)
    with pytest.raises(ConfigError, match="in_channels"):
        build_model(ModelConfig(feature_extractor_params={"in_channels": 3}), IN_CHANNELS)


def test_segmentation_scores_keep_a_peak_on_its_steps():
    logits = torch.full((1, 10, 3), -10.0)
    logits[0, 4, 1] = 10.0  # onset peak on frame 4 = steps 8, 9 at rate 2
    probs = logits[..., 1:].sigmoid()
    scores = upsample_frames(probs, 19, 2)
    assert scores.shape == (1, 19, 2)
    assert set(torch.nonzero(scores[0, :, 0] == scores[0, :, 0].max()).flatten().tolist()) <= {8, 9}


def test_centernet_scores_peak_on_the_offset_step():
    model = build(Combination("CenterNet", "CNNSpectrogram", "MLPDecoder"))
    heat = torch.full((1, 50, 2), -8.0)
    offset = torch.zeros(1, 50, 2)
    heat[0, 20, 0], offset[0, 20, 0] = 6.0, 0.5  # onset in frame 20, second of its 2 steps
    heat[0, 33, 1] = 6.0  # wakeup at the start of frame 33
    scores = model.scores(CenterNetOutput(heat, offset, torch.zeros(1, 50, 2)), 100)
    assert scores[0, :, 0].argmax() == 41 and scores[0, :, 1].argmax() == 66
    assert scores[0, 41, 0] == pytest.approx(torch.sigmoid(torch.tensor(6.0)).item())


def test_detr_scores_render_queries_as_peaks():
    model = build(Combination("DETR2DCNN", "CNNSpectrogram"))
    # three queries: a confident onset, a wakeup, and one that found nothing
    logits = torch.tensor([[[4.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 5.0]]])
    positions = torch.tensor([[(120 + 0.5) / 500, (400 + 0.5) / 500, 0.5]])
    scores = model.scores(DETROutput(logits, positions), 500)
    assert scores[0, :, 0].argmax() == 120 and scores[0, :, 1].argmax() == 400
    assert scores[0, 120, 0] == pytest.approx(logits[0, 0].softmax(-1)[0].item(), rel=1e-5)
    assert scores[0, 250, :].max() < 0.2  # the empty query adds no peak of its own


def test_detr_matching_assigns_each_event_to_its_nearest_confident_query():
    model = build(Combination("DETR2DCNN", "CNNSpectrogram"))
    logits = torch.tensor([[[0.0, 0.0, 3.0], [3.0, 0.0, 0.0], [0.0, 3.0, 0.0]]])
    positions = torch.tensor([[0.5, 0.2, 0.7]])
    targets = {
        "event_class": torch.tensor([[0, 1, 0]]),
        "event_position": torch.tensor([[0.21, 0.69, 0.0]]),
        "event_mask": torch.tensor([[True, True, False]]),
    }
    ((rows, cols),) = model.match(DETROutput(logits, positions), targets)
    assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {0: 1, 1: 2}
    good = model.loss(DETROutput(logits, positions), targets)
    swapped = model.loss(DETROutput(logits, positions.flip(-1)), targets)
    assert good < swapped


def test_detr_window_without_events_pushes_every_query_to_no_event():
    model = build(Combination("DETR2DCNN", "CNNSpectrogram"))
    x = torch.randn(1, IN_CHANNELS, 300)
    empty = {
        "event_class": torch.zeros(1, 4, dtype=torch.long),
        "event_position": torch.zeros(1, 4),
        "event_mask": torch.zeros(1, 4, dtype=torch.bool),
    }
    out = model(x)
    loss = model.loss(out, empty)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert model.class_head.bias.grad[2] < 0  # gradient descent raises the "no event" logit


def test_transformer_auto_model_without_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    cfg = ModelConfig(name="TransformerAutoModel", feature_extractor="SpecFeatureExtractor")
    with pytest.raises(ImportError, match=r"pip install -e '\.\[transformers\]'"):
        build_model(cfg, IN_CHANNELS)
