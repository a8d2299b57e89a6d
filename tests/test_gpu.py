"""On a CUDA device only (`pytest -m gpu`): mixed-precision training and inference, and DDP on
two GPUs. Everywhere else these skip; bench/gpu.py --tiny (a slow test) runs the same code
paths on the CPU."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

from sleepdetect.config import load_config
from sleepdetect.data.prepare import Manifest, prepare
from sleepdetect.experiment import Experiment
from sleepdetect.inference.bundles import load_bundle
from sleepdetect.inference.predict import predict_series
from sleepdetect.training.fold import train
from sleepdetect.training.trainer import resolve_precision

EXP001 = Path(__file__).resolve().parents[1] / "params" / "exp001.yaml"
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

# exp001's architecture (Spec2DCNN: CNNSpectrogram, smp UNet, UNet1DDecoder), cut down
SMALL_EXP001 = [
    "model.encoder_name=resnet18",
    "model.params={encoder_depth: 3}",
    "windows.length=1152",
    "windows.valid_stride=576",
    "windows.per_epoch=64",
    "trainer.batch_size=8",
    "trainer.max_epochs=1",
    "trainer.max_minutes=0",
    "trainer.accelerator=gpu",
    "split.kind=series",
    "split.n_folds=3",
    "split.fold=0",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    return [
        f"data.dir={out / 'data'}",
        "data.synthetic.series=3",
        "data.synthetic.days=3",
        "prepare.features=[anglez, enmo, hour_sin, hour_cos]",
    ]


def small_cfg(data, tmp_path, *overrides):
    cfg = load_config(EXP001, [*data, f"output.dir={tmp_path}", *SMALL_EXP001, *overrides])
    prepare(cfg)
    return cfg


def test_auto_precision_is_mixed_on_a_gpu():
    expected = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    assert resolve_precision("auto") == expected


def test_mixed_precision_training_and_inference_match_fp32(data, tmp_path):
    cfg = small_cfg(data, tmp_path, "trainer.precision=auto", "trainer.checkpoint=last")
    fold = train(cfg)
    log = pl.concat(pl.read_csv(f) for f in (fold / "log").glob("*/metrics.csv"))
    losses = log.drop_nulls("train_loss_step")["train_loss_step"]
    assert len(losses) and losses.is_finite().all()

    manifest = Manifest.load(Experiment.of(cfg).prepared("train"))
    features = manifest.features(manifest.series[0].series_id)[:20_000]
    gpu = load_bundle(fold, "cuda")  # predict_series autocasts on CUDA
    cpu = load_bundle(fold, "cpu")
    w = cfg.windows
    mixed = predict_series(gpu.model, features, w.length, w.valid_stride, 16, "cuda")
    full = predict_series(cpu.model, features, w.length, w.valid_stride, 16, "cpu")
    assert mixed.shape == full.shape and (mixed >= 0).all() and (mixed <= 1).all()
    assert abs(mixed - full).max() < 0.05  # bf16/fp16 rounding, not another model


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP needs two GPUs")
def test_ddp_on_two_gpus_gathers_validation_across_ranks(data, tmp_path):
    cfg = small_cfg(data, tmp_path, "trainer.devices=2", "trainer.strategy=ddp_spawn")
    fold = train(cfg)
    log = pl.concat(pl.read_csv(f) for f in (fold / "log").glob("*/metrics.csv"))
    assert (fold / "model.pt").is_file()
    assert len(log.drop_nulls("val_score")) == 1
