"""02_train: every fold of `split.fold` trained `trainer.seeds` times (in processes when
`trainer.fold_workers` > 1), then the out-of-fold scores gathered (cv/oof.py); the notebook
then tunes the post-processing when `tune.enabled` (cv/tune.py)."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import polars as pl
import torch

from sleepdetect.config import Config, save_config
from sleepdetect.core.errors import InputError
from sleepdetect.cv.oof import gather_oof, trained_folds
from sleepdetect.data.prepare import open_prepared
from sleepdetect.data.windows import fold_count
from sleepdetect.experiment import Experiment
from sleepdetect.training.fold import fold_inputs, train, trained_with


def train_folds(cfg: Config) -> Path:
    """The 02_train stage: train fold `split.fold`, or every fold when it is None, each
    `trainer.seeds` times (a model already trained with this config and data is kept), then
    gather the out-of-fold predictions of every trained fold (oof.py). Returns
    `<exp>/oof.parquet`."""
    n = fold_count(cfg.split.kind, cfg.split.n_folds)
    inputs = fold_inputs(cfg, open_prepared(cfg))
    todo = []  # (fold config, member)
    for fold in trained_folds(cfg):
        fold_cfg = replace(cfg, split=replace(cfg.split, fold=fold))
        for member in range(cfg.trainer.seeds):
            folder = Experiment.of(cfg).fold(fold, member)
            if trained_with(folder, fold_cfg, inputs):
                print(f"{folder.name}: already trained with this config")
                save_config(fold_cfg, folder / "config.yaml")  # infer, tune... as now
            else:
                todo.append((fold_cfg, member))
    workers = min(cfg.trainer.fold_workers, len(todo))
    if workers <= 1:
        for fold_cfg, member in todo:
            print(f"fold {fold_cfg.split.fold} of {n}, seed {fold_cfg.seed + member}")
            train(fold_cfg, member)
    else:
        _train_in_processes(todo, workers)
    return gather_oof(cfg)


def _train_in_processes(todo: list[tuple[Config, int]], workers: int) -> None:
    """Folds at once in `workers` processes sharing the cores: a small recurrent model gains
    nothing from a second thread, so two one-thread folds train twice as fast as two in turn."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    configs, members = [c for c, _ in todo], [m for _, m in todo]
    print(
        f"training {len(todo)} models of folds {sorted({c.split.fold for c in configs})}, "
        f"{workers} at once"
    )
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for fold_dir in pool.map(_train_with_threads, configs, members, [threads] * len(todo)):
            print(f"trained {fold_dir}")


def _train_with_threads(cfg: Config, member: int, threads: int) -> Path:
    torch.set_num_threads(threads)
    return train(cfg, member)


def fold_picture(cfg: Config, name: str) -> Path:
    """`name` (curves.png: loss and validation score; nights.png: scores around a few
    validation nights) of the first fold model this experiment trained."""
    bundles = Experiment.of(cfg).bundles(seeds=cfg.trainer.seeds)
    if not bundles:
        raise InputError(f"{cfg.exp_dir}: no trained fold; run 02_train first")
    return bundles[0] / name


def oof_metrics(cfg: Config) -> pl.DataFrame:
    """The out-of-fold score table 02_train wrote (AP per event x tolerance, and the score)."""
    return pl.read_csv(Experiment.of(cfg).oof_metrics)
