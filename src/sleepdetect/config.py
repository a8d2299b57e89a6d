"""Typed run configuration: params files and `key.sub=value` overrides into dataclasses.

Every section is a dataclass. Its defaults are the reference public solution's setup (the one
params/exp001.yaml spells out): Spec2DCNN (CNNSpectrogram -> smp UNet resnet34 -> UNet1DDecoder),
downsample 2, the four reference features, 8-hour windows with Gaussian targets of sigma 10,
and peak finding (score_th 0.005, distance 40), reading `data/synthetic`. The built-in demo is
not the defaults: params/demo.yaml overrides them (a small DayGRU over whole days, among other
keys). A params file replaces only the keys it writes. Loading checks every key and type, so a
typo in a params file fails before any work starts, listing the keys that are valid.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sleepdetect.core.constants import REFERENCE_FEATURES
from sleepdetect.core.files import write_text
from sleepdetect.core.paths import bundle_folders, resolve_path


class ConfigError(ValueError):
    """A params file or override that does not fit the config; the message says how to fix it."""


@dataclass
class SynthConfig:
    """How the demo fills an empty `data.dir` with synthetic competition files."""

    series: int = 8
    days: float = 6.0
    seed: int = 0
    variety: float = 0.0  # share of series from a wider population (data/synthetic.Variety)


@dataclass
class DataConfig:
    """Where the competition files are; an empty or missing folder gets synthetic data."""

    dir: str = "data/synthetic"
    synthetic: SynthConfig = field(default_factory=SynthConfig)


@dataclass
class OutputConfig:
    """Everything a run writes goes under `dir/<exp_name>/`."""

    dir: str = "outputs"


@dataclass
class PrepareConfig:
    """01_prepare: which file to read and which features to build (names: see features.py)."""

    phase: Literal["train", "test"] = "train"
    features: list[str] = field(default_factory=lambda: list(REFERENCE_FEATURES))


@dataclass
class ModelConfig:
    """Which registered model to build, and from which components (names: `python -m
    sleepdetect models`). Models that take no feature extractor, decoder or smp encoder ignore
    those fields. `params`, `feature_extractor_params` and `decoder_params` are extra keyword
    arguments of the model, extractor and decoder classes (their docstrings say which); channel
    counts come from the data, never from here."""

    name: str = "Spec2DCNN"
    feature_extractor: str = "CNNSpectrogram"
    decoder: str = "UNet1DDecoder"
    encoder_name: str = "resnet34"
    encoder_weights: str | None = None
    downsample_rate: int = 2
    params: dict[str, Any] = field(default_factory=dict)
    feature_extractor_params: dict[str, Any] = field(default_factory=dict)
    decoder_params: dict[str, Any] = field(default_factory=dict)
    # start from the weights of this bundle (a fold folder, e.g. a synthetic pretraining run);
    # it must be of the same architecture and features
    init_from: str | None = None


@dataclass
class PostprocessConfig:
    """Per-step scores -> scored event candidates (see postprocess.detect_events, which says
    why each option helps). Peak finding is the reference; every option after it is off by
    default. A new option is a field named after its detect_events argument (or one that
    postprocess.series_candidates derives) plus its code there."""

    # candidates: peak finding, or greedy picks by the score mass each minute could match
    method: Literal["peaks", "mass"] = "peaks"
    # minimum peak height (peaks) or minimum mass left (mass) of a candidate
    score_th: float = 0.005
    # peak finding (scipy.signal.find_peaks): minimum distance between peaks (steps)
    distance: int = 40
    # mass: at most this many picks per event in a day window (day_start_hour...)
    mass_max_per_day: int = 20
    # (a) snap peaks to the whole-minute grid of the labels, then move them minute_shift
    # steps off it towards the peak (1-5 covers one more labelled minute at most tolerances);
    # mass always sits minute_shift either side of each whole minute (3: seconds :15 and :45)
    minute_snap: bool = False
    minute_shift: int = 3
    # (b) extra candidates at peak + each offset (steps), scored x offset_decay per 12 steps away
    # (minute_snap, peak_offsets, offset_decay and distance are ignored under method: mass)
    peak_offsets: list[int] = field(default_factory=list)
    offset_decay: float = 0.5
    # (c) divide scores by their day window's max or sum (per event); windows start at this
    # local hour (12: one night per window), wakeups' at day_start_hour_wakeup (None: the same)
    day_norm: Literal["none", "max", "sum"] = "none"
    day_start_hour: int = 12
    day_start_hour_wakeup: int | None = None
    # (d) multiply scores inside repeated (not worn) days by suppress_factor (0: remove them)
    suppress_repeated: bool = False
    suppress_factor: float = 0.0
    # (e) series edges: scores in the last edge_decay_hours fall linearly to ~0 at the last step
    # (0: off); wakeups in the first start_wakeup_hours get x start_wakeup_factor (1: off)
    edge_decay_hours: float = 0.0
    start_wakeup_hours: float = 6.0
    start_wakeup_factor: float = 1.0


@dataclass
class SplitConfig:
    """Which data validate (see data/windows.split_segments): whole series in k folds
    (`series`), k contiguous blocks of each series' labelled nights (`nights`, for one or few
    series), or the last share of each series (`time`, one fold)."""

    kind: Literal["series", "nights", "time"] = "series"
    n_folds: int = 5
    fold: int | None = None  # the fold 02_train trains; None: every fold, then out-of-fold scores
    margin: int = 1440  # nights split: steps left out of training on each side of a fold (2 h)
    valid_fraction: float = 0.3  # time split: the last share of each series validates


@dataclass
class WindowsConfig:
    """Training windows: how long, how many, and how many are placed around labelled events."""

    length: int = 5760  # steps (8 h)
    per_epoch: int = 1024  # windows drawn each epoch
    event_ratio: float = 0.5  # share centred near a labelled event; the rest anywhere
    sigma: float = 10.0  # width of the Gaussian event targets, in steps
    sigma_final: float | None = None  # narrow the targets to this width by the last epoch
    valid_stride: int = 2880  # validation windows overlap by length - valid_stride
    # experiment folders whose prepared train series (same features) join every fold's
    # training windows, never validated: e.g. the synthetic pretraining's, mixed with real nights
    extra: list[str] = field(default_factory=list)
    extra_share: float = 0.5  # share of each epoch's windows drawn from them


@dataclass
class OptimizerConfig:
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05  # of all steps, linear warm-up before the cosine decay


@dataclass
class AugmentConfig:
    """Mixing augmentations (segmentation targets only); probability per batch, Beta(alpha)."""

    mixup_prob: float = 0.0
    mixup_alpha: float = 0.4
    cutmix_prob: float = 0.0
    cutmix_alpha: float = 0.4
    # play a window backwards with onset and wakeup swapped (a night read in reverse falls
    # asleep where it woke up): probability per batch
    reverse_prob: float = 0.0


@dataclass
class TrainerConfig:
    """Passed to Lightning's Trainer; the same notebook runs on one CPU, GPUs or nodes."""

    max_epochs: int = 50
    max_minutes: float | None = None  # stop after this much training time
    batch_size: int = 32
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "auto"  # auto: bf16-mixed on GPUs that have it, 16-mixed on others, 32 on CPU
    gradient_clip_val: float = 1.0
    early_stopping_patience: int = 0  # epochs without a better validation score; 0: off
    # which weights become the bundle: the epoch with the best validation score, or the last
    # epoch. `best` chooses on the validation nights, so their score is no longer out-of-fold;
    # `last` never validates during training (faster) and keeps the OOF score honest.
    checkpoint: Literal["best", "last"] = "best"
    fold_workers: int = 1  # folds trained at once, each in its own process (CPU: cores / 2)
    # models per fold, from seeds seed, seed + 1, ... (the split stays the seed's): averaged in
    # the out-of-fold scores and at inference; the first is fold<k>/, the others fold<k>-seed<j>/
    seeds: int = 1
    checkpoint_every_n_steps: int = 50  # for resuming a killed run
    # where runs show up: csv (fold<k>/log/, always written: curves.png reads it), and also
    # tensorboard (fold<k>/tb/) or mlflow ($MLFLOW_TRACKING_URI, else <output.dir>/mlflow.db),
    # each an extra of the package
    logger: Literal["csv", "tensorboard", "mlflow"] = "csv"


@dataclass
class InferConfig:
    """03_infer: which bundles predict which series, and how they are averaged."""

    # fold folders (an ensemble folder: its members); empty: this experiment's
    bundles: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)  # one per bundle; empty: equal weights
    phase: Literal["train", "test"] = "test"  # train: also scores against its labels
    stride: int | None = None  # steps between windows; None: each bundle's windows.valid_stride
    batch_size: int = 16
    copy_to: str | None = None  # also write submission.csv here (Kaggle scores ./submission.csv)
    # post-process with the settings `tune` chose (<exp>/tune/postprocess.yaml) instead of the
    # postprocess section
    tuned: bool = False
    # a heuristic that needs no training instead of the bundles (names: hdcza.BASELINES, e.g.
    # hdcza); it makes the candidates itself (the postprocess section is not used) and
    # baseline_params are its constructor arguments (empty: its published defaults)
    baseline: str | None = None
    baseline_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnsembleConfig:
    """Bundles trained on none of this experiment's data (the synthetic pretraining, say) that
    join every fold model: blended into the out-of-fold scores, so that `tune` chooses for the
    blend and the OOF score is the blend's, and into the submission. On the real sample the
    synthetic-only GRU at weight 0.5 raised the nested score from 0.674 to 0.692."""

    # bundle folders (fold<k> of another exp); an ensemble folder stands for its members
    outside: list[str] = field(default_factory=list)
    outside_weight: float = 0.5  # their mean's share of the scores; the fold models' has the rest


@dataclass
class TuneConfig:
    """`python -m sleepdetect tune`: post-processing chosen on out-of-fold predictions with
    nested folds (see tune.py). `grid` maps postprocess fields to the values to try; every
    combination is one setting."""

    enabled: bool = False  # also run at the end of 02_train
    # mass candidates with the options that raised the nested score on the real sample; a
    # larger grid (peak finding too: 312 settings) chose worse there, fitting noise of 8 nights
    grid: dict[str, list[Any]] = field(
        default_factory=lambda: {
            "method": ["mass"],
            "day_norm": ["none", "max", "sum"],
            "day_start_hour": [12, 5],
            "day_start_hour_wakeup": [None, 0],
            "suppress_repeated": [False, True],
            "edge_decay_hours": [0.0, 6.0],
            "start_wakeup_factor": [1.0, 0.3],
        }
    )
    stage2: bool = False  # also report the nested score with LightGBM rescoring (stage2.py)
    bootstrap: int = 1000  # resamples of the nights for the interval of the nested score


@dataclass
class KaggleConfig:
    """`python -m sleepdetect package`: the datasets and the kernel it builds (see kaggle.py).
    Slugs are lowercase letters, digits and single hyphens, 6-50 characters."""

    username: str | None = None  # None: $KAGGLE_USERNAME, then ~/.kaggle/kaggle.json
    competition: str = "child-mind-institute-detect-sleep-states"
    code_dataset: str = "sleepdetect-code"
    weights_dataset: str = "sleepdetect-weights"
    wheels_dataset: str = "sleepdetect-wheels"
    kernel: str = "sleepdetect-submission"
    licence: str = "other"  # one Kaggle licence name for each dataset, e.g. CC0-1.0, other
    private: bool = True
    enable_gpu: bool = True
    # packages the Kaggle image may lack, shipped as wheels at the versions installed here,
    # for Kaggle's Python and platform (pip download --only-binary)
    wheels: list[str] = field(
        default_factory=lambda: [
            "segmentation-models-pytorch",
            "timm",
            "huggingface-hub",
            "safetensors",
        ]
    )
    python_version: str = "3.11"
    platform: str = "manylinux2014_x86_64"
    # key=value overrides of the kernel's params (the first experiment's config), e.g.
    # infer.weights=[0.6,0.4] or infer.batch_size=64
    overrides: list[str] = field(default_factory=list)


@dataclass
class Config:
    exp_name: str = "demo"
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    kaggle: KaggleConfig = field(default_factory=KaggleConfig)

    @property
    def exp_dir(self) -> Path:
        return Path(self.output.dir) / self.exp_name


# ---------------------------------------------------------------- loading


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: typing.Sequence[str] = (),
    sections: dict[str, Any] | None = None,
) -> Config:
    """Build a Config from a params file, then `sections` (dicts, as papermill injects them),
    then `key.sub=value` overrides, each layer replacing only the keys it names. Paths written
    `input:<slug>/...` (the params file, data.dir, infer.bundles, ensemble.outside) are looked
    up as Kaggle inputs (paths.py)."""
    raw: dict[str, Any] = {}
    source = "params"
    if path is not None:
        source = str(path)
        raw = _read_yaml(Path(resolve_path(str(path))))
    for key, value in (sections or {}).items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = _deep_merge(raw[key], value)
        else:
            raw[key] = value
    for item in overrides:
        apply_override(raw, item)
    cfg = from_dict(Config, raw, source=source)
    cfg.data.dir = resolve_path(cfg.data.dir)
    if cfg.model.init_from:
        cfg.model.init_from = resolve_path(cfg.model.init_from)
        members = bundle_folders(cfg.model.init_from)
        if len(members) > 1:
            raise ConfigError(
                f"model.init_from={cfg.model.init_from}: an ensemble of {len(members)} bundles; "
                f"fine-tuning starts from one of them (e.g. {members[0]})"
            )
    cfg.infer.bundles = _bundle_paths(cfg.infer.bundles)
    cfg.ensemble.outside = _bundle_paths(cfg.ensemble.outside)
    cfg.windows.extra = [resolve_path(d) for d in cfg.windows.extra]
    if not 0 <= cfg.windows.extra_share < 1:
        raise ConfigError(f"windows.extra_share={cfg.windows.extra_share}: a share, from 0 to 1")
    if not 0 <= cfg.ensemble.outside_weight <= 1:
        raise ConfigError(
            f"ensemble.outside_weight={cfg.ensemble.outside_weight}: a share, from 0 to 1"
        )
    return cfg


def _bundle_paths(paths: list[str]) -> list[str]:
    """Bundle paths resolved, each ensemble folder replaced by its members."""
    return [f for p in paths for f in bundle_folders(resolve_path(p))]


def parse_override(item: str) -> tuple[list[str], Any]:
    """`optimizer.lr=5e-4` -> (["optimizer", "lr"], 0.0005); values are read as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key.strip().split("."), value


def apply_override(raw: dict[str, Any], item: str) -> None:
    keys, value = parse_override(item)
    node = raw
    for k in keys[:-1]:
        child = node.get(k)
        if not isinstance(child, dict):
            child = node[k] = {}
        node = child
    node[keys[-1]] = value


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist (params files live in params/)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"params file {path} is not valid YAML: {e}") from e
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"params file {path} must hold a mapping of sections, not {type(raw).__name__}"
        )
    return raw


def from_dict(cls: type, raw: Any, source: str = "params", prefix: str = "") -> Any:
    """Check `raw` against dataclass `cls` (keys and types) and build it."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {prefix + unknown[0]!r} at {where}; "
            f"valid keys: {', '.join(names)}"
        )
    kwargs = {k: _convert(hints[k], v, source, f"{prefix}{k}") for k, v in raw.items()}
    return cls(**kwargs)


def _convert(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for inner in (a for a in args if a is not type(None)):
            try:
                return _convert(inner, value, source, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(" or ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {key} must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return [_convert(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be {tp.__name__}, got {value!r}")
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp):
        raise ConfigError(
            f"{source}: {key} must be {tp.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


# ---------------------------------------------------------------- saving


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config (every key, defaults included) so a run can be redone."""
    return write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key a params file may set, for docs and error messages."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += valid_keys(tp, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out
