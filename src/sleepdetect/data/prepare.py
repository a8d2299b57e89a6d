"""01_prepare: competition files -> float32 feature arrays per series + a manifest.

Requires: `data.dir` with `<phase>_series.parquet` (and `train_events.csv` for the train
phase); an empty or missing `data.dir` is filled with synthetic data first.
Outputs, in `prepared/<phase>/` of the experiment folder (experiment.py):
  features/<series_id>.npy   (steps, features) float32, row i = step i, memory-mappable
  events.csv                 validated events (train phase)
  manifest.json              series ids, lengths, first timestamps, feature names, constants,
                             and the source files' records (path, size, fingerprint)
  config.yaml                the resolved config of the run
The folder is built aside and swapped in whole, so a failed run keeps the previous result.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from sleepdetect.config import Config, save_config, to_dict
from sleepdetect.core.constants import STEP_SECONDS
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import atomic_path, save_npy, write_json
from sleepdetect.core.fingerprints import source_change, source_record
from sleepdetect.core.progress import progress
from sleepdetect.core.records import read_record
from sleepdetect.data.features import (
    NORMALISATION,
    SeriesSignals,
    build_features,
    check_feature_names,
)
from sleepdetect.data.io import count_rows, iter_series, read_events
from sleepdetect.data.synthetic import GENERATOR_VERSION, SYNTHETIC_RECORD, write_synthetic
from sleepdetect.experiment import Experiment

MANIFEST = "manifest.json"


@dataclass
class SeriesEntry:
    series_id: str
    n_steps: int
    first_timestamp: str
    file: str


@dataclass
class Manifest:
    """What 01_prepare wrote; later stages read arrays through it."""

    root: Path
    phase: str
    sources: dict[str, dict]  # "series" (and "events"): fingerprints.source_record
    feature_names: list[str]
    normalisation: dict[str, float]
    step_seconds: int
    series: list[SeriesEntry]
    events: str | None
    prepare_config: dict

    @classmethod
    def load(cls, root: str | Path) -> Manifest:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise InputError(f"{path}: no manifest; run 01_prepare (python -m sleepdetect prepare)")
        try:
            raw = json.loads(path.read_text())
            raw["series"] = [SeriesEntry(**s) for s in raw["series"]]
            return cls(root=root, **raw)
        except (ValueError, TypeError, KeyError) as e:  # truncated, foreign or older
            raise InputError(
                f"{path}: not a manifest of this version of sleepdetect ({type(e).__name__}: "
                f"{e}); prepare again (python -m sleepdetect prepare PARAMS)"
            ) from e

    @property
    def source(self) -> Path:
        """The series file the arrays were built from."""
        return Path(self.sources["series"]["path"])

    def features(self, series_id: str, mmap: bool = True) -> np.ndarray:
        """(steps, features) float32 array of one series, memory-mapped by default."""
        entry = next((s for s in self.series if s.series_id == series_id), None)
        if entry is None:
            raise KeyError(f"series {series_id!r} is not in {self.root / MANIFEST}")
        path = self.root / entry.file
        try:
            array = np.load(path, mmap_mode="r" if mmap else None)
        except (OSError, ValueError) as e:  # missing, truncated or not an .npy file
            raise InputError(
                f"{path}: cannot be read ({e}); the prepared folder is damaged: prepare again "
                "(python -m sleepdetect prepare PARAMS)"
            ) from e
        expected = (entry.n_steps, len(self.feature_names))
        if array.shape != expected:
            raise InputError(
                f"{path}: holds an array of shape {array.shape}, but {self.root / MANIFEST} "
                f"says {expected} (steps, features) for series {series_id!r}; the prepared "
                "folder is damaged: prepare again (python -m sleepdetect prepare PARAMS)"
            )
        return array

    def read_events(self) -> pl.DataFrame:
        """The validated labels (series_id, night, event, step, timestamp; step null for a night
        without events)."""
        if self.events is None:
            raise InputError(f"{self.root}: no events; prepare the train phase (it has labels)")
        return pl.read_csv(self.root / self.events, schema_overrides={"step": pl.Int64})

    def feature(self, series_id: str, name: str) -> np.ndarray | None:
        """One feature column of a series, or None when it was not prepared."""
        if name not in self.feature_names:
            return None
        return self.features(series_id)[:, self.feature_names.index(name)]

    @property
    def lengths(self) -> dict[str, int]:
        return {s.series_id: s.n_steps for s in self.series}


def ensure_data(cfg: Config) -> Path:
    """`data.dir`, filled with synthetic competition files when it is empty or missing. A
    folder `write_synthetic` filled with another version of the generator is an error: its
    series are not what the generator now makes (the folder's other arguments are its own)."""
    data_dir = Path(cfg.data.dir)
    if not data_dir.exists() or not any(data_dir.iterdir()):
        syn = cfg.data.synthetic
        print(f"{data_dir} is empty: writing {syn.series} synthetic series (seed {syn.seed})")
        write_synthetic(data_dir, syn.series, syn.days, syn.seed, syn.variety)
        return data_dir
    recorded = read_record(data_dir / SYNTHETIC_RECORD) or {}
    if recorded.get("generator", GENERATOR_VERSION) != GENERATOR_VERSION:
        raise InputError(
            f"{data_dir}: its synthetic series were made by generator version "
            f"{recorded['generator']} ({data_dir / SYNTHETIC_RECORD}), this is version "
            f"{GENERATOR_VERSION}; delete the folder to write them again"
        )
    return data_dir


def source_files(data_dir: Path, phase: str) -> dict[str, Path]:
    """The competition files a prepared `phase` is built from."""
    files = {"series": data_dir / f"{phase}_series.parquet"}
    if phase == "train":
        files["events"] = data_dir / "train_events.csv"
    return files


def stale_reason(manifest: Manifest, data_dir: Path, phase: str, features: list[str]) -> str | None:
    """Why `manifest` is not `phase` of `data_dir` prepared with `features` (None: it is)."""
    if manifest.phase != phase:
        return f"it holds the {manifest.phase} phase, not {phase}"
    if manifest.feature_names != list(features):
        return f"it has features {manifest.feature_names}, not {list(features)}"
    for name, path in source_files(data_dir, phase).items():
        change = source_change(manifest.sources[name], path)
        if change:
            return change
    return None


_PREPARE_AGAIN = (
    "prepare again (python -m sleepdetect prepare PARAMS, or python -m sleepdetect run PARAMS, "
    "which does it)"
)


def open_prepared(
    cfg: Config,
    phase: str = "train",
    features: list[str] | None = None,
    on_stale: Literal["error", "prepare"] = "error",
    fix: str = _PREPARE_AGAIN,
) -> Manifest:
    """The prepared `phase` of this experiment, checked against `data.dir` and `features`
    (default `prepare.features`; `[]`: whatever it was prepared with). A missing or stale
    folder is an InputError ending in `fix`, or with on_stale="prepare" is prepared again."""
    root = Experiment.of(cfg).prepared(phase)
    if not (root / MANIFEST).is_file():
        if on_stale == "prepare":
            return _prepare_again(cfg, phase, features)
        raise InputError(f"{root / MANIFEST}: no prepared {phase} series; {fix}")
    manifest = Manifest.load(root)
    wanted = manifest.feature_names if features == [] else features or cfg.prepare.features
    reason = stale_reason(manifest, Path(cfg.data.dir), phase, wanted)
    if reason is None:
        return manifest
    if on_stale == "prepare":
        print(f"{root}: prepared again: {reason}")
        return _prepare_again(cfg, phase, wanted)
    raise InputError(
        f"{root} was not prepared from data.dir={cfg.data.dir} with these features: {reason}; {fix}"
    )


def _prepare_again(cfg: Config, phase: str, features: list[str] | None) -> Manifest:
    features = list(features or cfg.prepare.features)
    return prepare(replace(cfg, prepare=replace(cfg.prepare, phase=phase, features=features)))


def prepare(cfg: Config) -> Manifest:
    """Build the prepared folder for `cfg.prepare.phase` and return its manifest."""
    check_feature_names(cfg.prepare.features)
    data_dir = ensure_data(cfg)
    phase = cfg.prepare.phase
    files = source_files(data_dir, phase)
    series_path = files["series"]
    if not series_path.is_file():
        present = ", ".join(sorted(p.name for p in data_dir.iterdir())) or "nothing"
        raise InputError(
            f"{series_path}: not found (the folder holds {present}); data.dir must hold the "
            f"competition files, e.g. {phase}_series.parquet"
        )
    if "events" in files and not files["events"].is_file():
        raise InputError(f"{files['events']}: not found; the train phase needs the labels file")

    final = Experiment.of(cfg).prepared(phase)
    work = final.with_name(f".{phase}.partial")
    shutil.rmtree(work, ignore_errors=True)
    (work / "features").mkdir(parents=True)

    try:
        _build(cfg, files, work)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # the previous result, if any, stays
        raise
    _swap_in(work, final)
    return Manifest.load(final)


def _build(cfg: Config, files: dict[str, Path], work: Path) -> None:
    phase, series_path = cfg.prepare.phase, files["series"]
    entries = []
    total = count_rows(series_path)
    with progress(total=total, unit="row", unit_scale=True, desc=f"prepare {phase}") as bar:
        for df in iter_series(series_path):
            sid = df["series_id"][0]
            signals = SeriesSignals(
                anglez=df["anglez"].to_numpy(),
                enmo=df["enmo"].to_numpy(),
                seconds_of_day=df["seconds_of_day"].to_numpy(),
            )
            save_npy(
                work / "features" / f"{sid}.npy", build_features(signals, cfg.prepare.features)
            )
            entries.append(SeriesEntry(sid, len(df), df["timestamp"][0], f"features/{sid}.npy"))
            bar.update(len(df))

    events_file = None
    if "events" in files:
        events = read_events(files["events"], {e.series_id: e.n_steps for e in entries})
        with atomic_path(work / "events.csv") as tmp:
            events.write_csv(tmp)
        events_file = "events.csv"

    save_config(cfg, work / "config.yaml")
    manifest = {
        "phase": phase,
        "sources": {name: source_record(path) for name, path in files.items()},
        "feature_names": list(cfg.prepare.features),
        "normalisation": NORMALISATION,
        "step_seconds": STEP_SECONDS,
        "series": [asdict(e) for e in entries],
        "events": events_file,
        "prepare_config": to_dict(cfg.prepare),
    }
    write_json(work / MANIFEST, manifest)


def _swap_in(work: Path, final: Path) -> None:
    """Replace `final` by `work` with two renames, so readers never see a half folder."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    work.rename(final)
    shutil.rmtree(old, ignore_errors=True)
