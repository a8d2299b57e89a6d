"""The Lightning Trainer of a fold: checkpoints, precision, loggers and one progress bar an
epoch."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.loggers import CSVLogger

from sleepdetect.config import Config, ConfigError
from sleepdetect.core.progress import bar_class


def resolve_precision(precision: str) -> str:
    """`auto`: bf16 mixed precision on GPUs that have it, fp16 mixed on older GPUs, fp32 on CPU."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def make_trainer(cfg: Config, fold_dir: Path, extra: Sequence[L.Callback] = ()) -> L.Trainer:
    """The Trainer of one fold: `last.ckpt` to resume from (and `best.ckpt` when the epoch is
    chosen by validation score), precision, loggers; `extra` callbacks run after its own."""
    t = cfg.trainer
    by_score = t.checkpoint == "best"  # `last` never validates during training
    callbacks = [
        EpochProgress(),
        ModelCheckpoint(
            dirpath=fold_dir / "checkpoints",
            filename="last",
            every_n_train_steps=t.checkpoint_every_n_steps,
            save_top_k=1,
            enable_version_counter=False,
        ),
    ]
    if by_score:
        best = ModelCheckpoint(
            dirpath=fold_dir / "checkpoints",
            filename="best",
            monitor="val_score",
            mode="max",
            save_top_k=1,
            save_last=False,
        )
        callbacks.insert(0, best)  # the first one is trainer.checkpoint_callback
    if t.early_stopping_patience and by_score:
        callbacks.append(
            EarlyStopping(monitor="val_score", mode="max", patience=t.early_stopping_patience)
        )
    trainer = L.Trainer(
        max_epochs=t.max_epochs,
        max_time={"minutes": t.max_minutes} if t.max_minutes else None,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        precision=resolve_precision(t.precision),
        gradient_clip_val=t.gradient_clip_val or None,
        callbacks=callbacks,
        logger=_loggers(cfg, fold_dir),
        default_root_dir=fold_dir,
        deterministic="warn",
        num_sanity_val_steps=0,
        limit_val_batches=None if by_score else 0,
        enable_model_summary=False,
        # every 10 steps, or every step of an epoch shorter than that
        log_every_n_steps=max(1, min(10, cfg.windows.per_epoch // t.batch_size)),
    )
    # after the checkpoint callbacks, which Lightning moves last: a callback that stops the run
    # at a step sees that step's checkpoint written
    trainer.callbacks.extend(extra)
    return trainer


class _NoAdverts(logging.Filter):
    """Drops Lightning's tip to install its cloud logger from every run's output; its other
    messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdverts())
# Lightning 2.6 calls a torch.utils._pytree check that torch 2.9+ deprecates, once per fit;
# only that message is hidden, until Lightning no longer calls it
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class EpochProgress(ProgressBar):
    """One bar per training epoch (steps, loss, validation score) from `progress.bar_class`:
    a widget in Jupyter, text in `sleepdetect run` and terminals. Lightning's own bar is a
    widget whenever ipywidgets is installed, which shows as nothing in a papermill run."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._bar = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled and trainer.is_global_zero:
            total = trainer.num_training_batches
            self._bar = bar_class()(
                total=total if math.isfinite(total) else None,
                desc=f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                unit="step",
            )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._bar is not None:
            self._bar.set_postfix(self._shown(trainer, pl_module), refresh=False)
            self._bar.update(1)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:  # validation ran before this: its score joins the bar
            self._bar.set_postfix(self._shown(trainer, pl_module))
            self._bar.close()
            self._bar = None

    def _shown(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, str]:
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)  # the log's version number, not a figure of training
        return {k: v if isinstance(v, str) else f"{v:.4g}" for k, v in metrics.items()}


def _loggers(cfg: Config, fold_dir: Path) -> list:
    """CSV always (curves.png reads it), plus `trainer.logger`'s, imported only when chosen;
    a resumed run logs to the next version_N."""
    loggers = [CSVLogger(fold_dir, name="log")]
    name = cfg.trainer.logger
    if name == "csv":
        return loggers
    if importlib.util.find_spec(name) is None:  # the extra of the same name installs it
        raise ConfigError(
            f"trainer.logger={name}: {name} is not installed; pip install -e '.[{name}]' "
            "(or trainer.logger=csv)"
        )
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger  # needs the extra: here

        loggers.append(TensorBoardLogger(fold_dir, name="tb", default_hp_metric=False))
    else:
        from lightning.pytorch.loggers import MLFlowLogger  # needs the extra: here

        # a server the user already has, else one database file beside the experiments
        # (MLflow 3 no longer takes a plain folder)
        store = f"sqlite:///{(Path(cfg.output.dir) / 'mlflow.db').resolve()}"
        uri = os.environ.get("MLFLOW_TRACKING_URI") or store
        loggers.append(
            MLFlowLogger(experiment_name=cfg.exp_name, run_name=fold_dir.name, tracking_uri=uri)
        )
    return loggers
