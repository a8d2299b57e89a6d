"""Bundles: what 02_train leaves in a fold folder, loaded back without Lightning and
checked, so a damaged or mismatched file is an error naming the fix, never a wrong score."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from sleepdetect.config import Config, ConfigError, load_config
from sleepdetect.core.errors import InputError
from sleepdetect.core.paths import archive_instead, nested, nested_candidates
from sleepdetect.core.registry import UnknownComponentError
from sleepdetect.experiment import MODEL_FILE, Experiment, averaged_bundles
from sleepdetect.models import build_model
from sleepdetect.models.base import SleepModel


@dataclass
class Bundle:
    """What 02_train leaves in a fold folder: the resolved config and plain weights."""

    path: Path
    config: Config
    model: SleepModel


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> Bundle:
    """Rebuild a trained model from `model.pt` + `config.yaml` (no Lightning, no download).

    A bundle found one or two folders deeper than named (a Kaggle dataset unpacked into a
    folder of its own name) is used, with a note. Anything else that is not a bundle 02_train
    wrote is an InputError naming the file and the fix: no such folder, an archive where the
    folder should be, a config.yaml that is not a config, a model.pt that is not plain torch
    weights (truncated, another format) or not of the model its config.yaml describes.
    """
    path = _bundle_folder(Path(path))
    cfg = _bundle_config(path)
    # the weights come from model.pt: never download pretrained encoder weights for them
    model_cfg = replace(cfg.model, encoder_weights=None)
    try:
        model = build_model(model_cfg, in_channels=len(cfg.prepare.features))
    except (ConfigError, UnknownComponentError) as e:
        raise InputError(f"{path / 'config.yaml'}: {e}; {_SAME_CONFIG}") from e
    _fit_weights(model, _bundle_state(path), path, cfg)
    return Bundle(path, cfg, model.to(device).eval())


_RETRAIN = "retrain the bundle (python -m sleepdetect run <params> --only train --force)"


_SAME_CONFIG = (
    "the config.yaml beside model.pt must be the one it was trained with: copy both files "
    f"from the same outputs/<exp_name>/fold<k>/, or {_RETRAIN}"
)


def _bundle_folder(path: Path) -> Path:
    """The folder holding `path`'s model.pt: `path`, or one or two folders deeper (noted)."""
    found = nested(path, MODEL_FILE)
    if found is not None and (found / "config.yaml").is_file():
        if found != path:
            print(f"note: bundle {path} is {found} (unpacked a folder deeper)")
        return found
    archive = archive_instead(path)
    if archive is not None:
        raise InputError(
            f"{path}: no such bundle folder, but {archive} is an archive where its folders "
            "should be (Kaggle did not unpack a dataset uploaded with `-r tar`). Upload that "
            "dataset again unpacked (a new version with `kaggle datasets version -p <folder> "
            f"-r zip`), or unpack it (`tar -xf {archive}`) and point infer.bundles there"
        )
    if not path.is_dir():
        raise InputError(
            f"{path}: no such folder; a bundle is a fold folder written by 02_train "
            "(outputs/<exp_name>/fold<k>/ holding model.pt and config.yaml)"
        )
    several = nested_candidates(path, MODEL_FILE)
    if len(several) > 1:
        shown = ", ".join(str(p) for p in several[:5])
        raise InputError(
            f"{path}: not a bundle but a folder of {len(several)} ({shown}); name each "
            "bundle folder in infer.bundles"
        )
    for name in (MODEL_FILE, "config.yaml"):
        if not (path / name).is_file():
            raise InputError(
                f"{path}: no {name}; a bundle is a fold folder written by 02_train "
                "(outputs/<exp_name>/fold<k>/)"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _bundle_config(path: Path) -> Config:
    try:
        return load_config(path / "config.yaml")
    except ConfigError as e:
        raise InputError(
            f"{path / 'config.yaml'}: not a bundle config ({e}); {_SAME_CONFIG}"
        ) from e


def _bundle_state(path: Path) -> dict[str, torch.Tensor]:
    """model.pt's state_dict, or an InputError saying why it is not one."""
    file = path / MODEL_FILE
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except PermissionError:
        raise  # names the file itself, and it is not the file's content
    except Exception as e:  # torch raises many types (OSError too) for a file not its own
        first = (str(e).splitlines() or [""])[0][:160]
        raise InputError(
            f"{file}: not readable as torch weights ({type(e).__name__}: {first}); the file "
            f"is truncated (an interrupted copy or upload?) or of another format. Copy it "
            f"again from the fold folder 02_train wrote, or {_RETRAIN}"
        ) from e
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InputError(
            f"{file}: holds a {type(state).__name__}, not the state_dict (name -> tensor) "
            f"02_train writes (a Lightning checkpoint is last.ckpt, not model.pt); {_RETRAIN}"
        )
    return state


def _fit_weights(model: SleepModel, state: dict, path: Path, cfg: Config) -> None:
    """Load `state` into `model`, or an InputError listing what does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} in model.pt, {tuple(v.shape)} by config.yaml"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else "",
        ]
        raise InputError(
            f"{path / 'model.pt'} is not the model {path / 'config.yaml'} describes "
            f"(model.name={cfg.model.name}, model.params={cfg.model.params}, "
            f"{len(cfg.prepare.features)} features): {', '.join(p for p in parts if p)}; "
            f"{_SAME_CONFIG}"
        )
    params = dict(model.named_parameters())
    bad = [k for k in params if state[k].is_floating_point() and not state[k].isfinite().all()]
    if bad:
        raise InputError(
            f"{path / 'model.pt'}: {len(bad)} weights are not finite (e.g. {bad[0]}): the "
            f"training diverged; {_RETRAIN} (a lower optimizer.lr?)"
        )
    model.load_state_dict(state)


def find_bundles(cfg: Config) -> list[Path]:
    """`infer.bundles`, or every fold this experiment trained (its first `trainer.seeds`
    models a fold, those of its OOF scores)."""
    found = averaged_bundles(cfg)
    if cfg.infer.bundles:
        return found
    extra = [p for p in Experiment.of(cfg).bundles() if p not in found]
    if extra:  # left by a run with more trainer.seeds: not in the OOF scores, so not here
        print(
            f"infer: {', '.join(p.name for p in extra)} left out "
            f"(trainer.seeds={cfg.trainer.seeds})"
        )
    if not found:
        raise InputError(
            f"{cfg.exp_dir}: no trained fold (fold*/{MODEL_FILE}); run 02_train first or name "
            "bundles in infer.bundles"
        )
    return found


def outside_bundles(cfg: Config, device: str | torch.device = "cpu") -> list[Bundle]:
    """`ensemble.outside`, refused when one was trained on this experiment's data.dir (its
    scores of these nights would not be out-of-fold)."""
    bundles = [load_bundle(p, device) for p in cfg.ensemble.outside]
    here = Path(cfg.data.dir).resolve()
    for b in bundles:
        if Path(b.config.data.dir).resolve() == here:
            raise ConfigError(
                f"ensemble.outside: {b.path} was trained on data.dir={b.config.data.dir}, this "
                "experiment's data; an outside bundle must have seen none of it (name it in "
                "infer.bundles to average it at inference only)"
            )
    return bundles


def ensemble_bundles(cfg: Config, device: torch.device) -> tuple[list[Bundle], list[float]]:
    """The fold bundles to average (`infer.bundles`, or this experiment's) and their weights."""
    bundles = [load_bundle(p, device) for p in find_bundles(cfg)]
    weights = cfg.infer.weights or [1.0] * len(bundles)
    if len(weights) != len(bundles):
        raise InputError(f"infer.weights has {len(weights)} values for {len(bundles)} bundles")
    return bundles, weights


def same_features(bundles: list[Bundle]) -> None:
    """Refuse to average bundles trained on different features."""
    features = bundles[0].config.prepare.features
    for b in bundles[1:]:
        if b.config.prepare.features != features:
            raise InputError(
                f"bundles {bundles[0].path} and {b.path} were trained on different features; "
                "ensemble bundles of one feature set"
            )
