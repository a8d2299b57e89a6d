"""`python -m sleepdetect run`: execute the notebooks through papermill, stage by stage.

Each stage's executed copy goes to `<output.dir>/<exp_name>/NN_name.ipynb`; the source
notebooks are never written. A failed stage stops the run and names the notebook and cell.
A stage whose output is complete and whose params are unchanged since it last succeeded is
skipped (`force` reruns it). Overrides with comma lists (`optimizer.lr=1e-4,5e-4`) sweep:
each combination runs as its own experiment, and a table of their scores ends the run.

An experiment folder is written by one run at a time: `run_experiment` holds its `.lock`
(locks.py), so a second run (or a `package` reading it) is refused at once, naming this one.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import jupytext
import papermill as pm
import polars as pl
from traitlets.config import Config as KernelConfig

from sleepdetect.baselines.hdcza import build_baseline, features_for
from sleepdetect.config import (
    Config,
    ConfigError,
    load_config,
    parse_override,
    save_config,
    to_dict,
)
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import is_disk_full, write_text
from sleepdetect.core.fingerprints import content_fingerprint
from sleepdetect.core.locks import experiment_lock
from sleepdetect.core.paths import project_root
from sleepdetect.core.progress import PLAIN
from sleepdetect.core.records import check_record, write_record
from sleepdetect.data.prepare import MANIFEST, source_files
from sleepdetect.experiment import Experiment, averaged_bundles, model_sha256

# Stage name -> notebook, in pipeline order.
STAGES = {"prepare": "01_prepare", "train": "02_train", "infer": "03_infer"}
# The config sections each stage reads: a change in any of them makes the stage run again.
_PREPARE_KEYS = ("data", "prepare")
_TRAIN_KEYS = (
    *_PREPARE_KEYS,
    "seed",
    "model",
    "split",
    "windows",
    "optimizer",
    "augment",
    "trainer",
    "postprocess",
    "ensemble",
    "tune",
)
STAGE_KEYS = {"prepare": _PREPARE_KEYS, "train": _TRAIN_KEYS, "infer": (*_TRAIN_KEYS, "infer")}


def stage_output(cfg: Config, stage: str) -> Path:
    """The file a stage writes last: present only when the stage completed."""
    exp = Experiment.of(cfg)
    return {
        "prepare": exp.prepared(cfg.prepare.phase) / MANIFEST,
        "train": exp.oof,
        "infer": exp.submission(cfg.infer.phase),
    }[stage]


def stage_inputs(cfg: Config, root: Path, stage: str) -> dict[str, str | None]:
    """The files a stage reads besides its config, by content (None: not there yet): the
    competition files of its phase, the `init_from` weights, `windows.extra`'s prepared series,
    the bundles it averages. A file replaced under the same path makes the stage run again."""
    phase = cfg.infer.phase if stage == "infer" else cfg.prepare.phase
    files = {f"data {k}": p for k, p in source_files(root / cfg.data.dir, phase).items()}
    bundles = {}
    if stage == "train" and cfg.model.init_from:
        bundles["init_from"] = cfg.model.init_from
    if stage == "train":  # the manifests of windows.extra hold their sources' fingerprints
        files |= {
            f"extra {d}": root / Experiment(d).prepared("train") / MANIFEST
            for d in cfg.windows.extra
        }
    if stage in ("train", "infer"):
        bundles |= {f"outside {b}": b for b in cfg.ensemble.outside}
    if stage == "infer" and cfg.infer.baseline is None:  # a baseline reads no bundle
        found = averaged_bundles(cfg, root)
        bundles |= {f"bundle {os.path.relpath(b, root)}": b for b in found}
    hashed = {k: content_fingerprint(p) if p.is_file() else None for k, p in files.items()}
    return hashed | {k: model_sha256(b, root) for k, b in bundles.items()}


def stage_record(cfg: Config, root: Path, stage: str) -> dict:
    """What a stage ran with: the config sections it reads, the files it reads (by content)
    and its last output. `run` skips the stage while `.stages/<stage>.json` records the same."""
    d = to_dict(cfg)
    record = {k: d[k] for k in STAGE_KEYS[stage]} | {"files": stage_inputs(cfg, root, stage)}
    return record | {"output": str(stage_output(cfg, stage))}


def notebook_path(root: Path, name: str) -> Path:
    """The .ipynb of a stage, made from its .py pair (the source of truth) when missing."""
    ipynb = root / "notebooks" / f"{name}.ipynb"
    if not ipynb.is_file():
        pair = ipynb.with_suffix(".py")
        if not pair.is_file():
            raise FileNotFoundError(f"{ipynb} and {pair} are both missing")
        write_text(ipynb, jupytext.writes(jupytext.read(pair), fmt="ipynb"))
    return ipynb


def available_stages(root: Path) -> list[str]:
    nb = root / "notebooks"
    return [
        s for s, n in STAGES.items() if (nb / f"{n}.py").is_file() or (nb / f"{n}.ipynb").is_file()
    ]


def run(
    params: str | Path,
    overrides: Sequence[str] = (),
    stages: Sequence[str] | None = None,
    force: bool = False,
) -> int:
    """Run `stages` (default: every stage whose notebook exists) with the params injected;
    a comma-list override sweeps (see the module docstring)."""
    combos = expand_sweep(overrides)
    if len(combos) == 1:
        return run_experiment(params, combos[0], stages, force)
    swept = {o.partition("=")[0] for o in overrides if _is_sweep(o)}
    base = load_config(params, [o for o in overrides if not _is_sweep(o)]).exp_name
    root = project_root() or Path.cwd()
    rows = []
    for combo in combos:
        name = "-".join([base, *(_slug(o) for o in combo if o.partition("=")[0] in swept)])
        code = run_experiment(params, [*combo, f"exp_name={name}"], stages, force)
        out_dir = root / load_config(params, [*combo, f"exp_name={name}"]).exp_dir
        rows.append((name, code, _scores(out_dir)))
    print(f"\nsweep of {len(rows)} experiments")
    print(f"{'experiment':<48} {'status':<7} scores")
    for name, code, scores in rows:
        status = "ok" if code == 0 else "failed"
        text = "  ".join(f"{k} {v:.4f}" for k, v in scores.items()) or "-"
        print(f"{name:<48} {status:<7} {text}")
    return max(code for _, code, _ in rows)


def _is_sweep(override: str) -> bool:
    value = override.partition("=")[2].strip()
    return "," in value and not value.startswith(("[", "{"))


def expand_sweep(overrides: Sequence[str]) -> list[list[str]]:
    """`a=1,2 b=x` -> [[a=1, b=x], [a=2, b=x]]; bracketed values (lists) are never split."""
    choices = []
    for item in overrides:
        parse_override(item)  # a malformed override fails here, before anything runs
        key, _, text = item.partition("=")
        values = text.split(",") if _is_sweep(item) else [text]
        choices.append([f"{key}={v.strip()}" for v in values])
    return [list(c) for c in itertools.product(*choices)]


def _slug(override: str) -> str:
    key, _, value = override.partition("=")
    return re.sub(r"[^A-Za-z0-9.=-]+", "-", f"{key.split('.')[-1]}={value}")


def run_experiment(
    params: str | Path,
    overrides: Sequence[str] = (),
    stages: Sequence[str] | None = None,
    force: bool = False,
) -> int:
    """One experiment: its stages in order, skipping those already done with these params.
    Holds the experiment folder's lock throughout (InputError at once if another process
    holds it)."""
    cfg = load_config(params, overrides)  # fail on a bad key before any notebook starts
    root = project_root() or Path.cwd()
    todo = list(stages) if stages else available_stages(root)
    unknown = [s for s in todo if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGES)}")
    if cfg.infer.baseline is not None:
        todo = _without_training(cfg, todo)
    out_dir = root / cfg.exp_dir
    with experiment_lock(out_dir):
        return _run_stages(cfg, root, params, overrides, todo, force, out_dir)


def _without_training(cfg: Config, todo: list[str]) -> list[str]:
    """The stages of a baseline experiment (`infer.baseline`): its params checked before any
    stage runs, and no train stage, since a baseline has nothing to train."""
    baseline = build_baseline(cfg.infer.baseline, cfg.infer.baseline_params)
    features_for(cfg.infer.baseline, baseline, cfg.prepare.features)
    if "train" in todo:
        print(f"[train] infer.baseline={cfg.infer.baseline}: nothing to train, not run")
    return [s for s in todo if s != "train"]


def _run_stages(
    cfg: Config,
    root: Path,
    params: str | Path,
    overrides: Sequence[str],
    todo: list[str],
    force: bool,
    out_dir: Path,
) -> int:
    save_config(cfg, Experiment(out_dir).config)
    parameters = {"params_file": str(Path(params).resolve()), "overrides": list(overrides)}

    timings = []
    rerun = force
    for stage in todo:
        name = STAGES[stage]
        exp = Experiment(out_dir)
        executed, marker = exp.notebook(name), exp.stage_record(stage)
        changed = check_record(marker, stage_record(cfg, root, stage))
        if not rerun and not changed and (root / stage_output(cfg, stage)).is_file():
            print(f"[{stage}] complete with these params: skipped (--force reruns it)")
            continue
        if not rerun and changed != "no record":
            print(f"[{stage}] runs again: {changed or 'its output is missing'}")
        rerun = True  # every later stage depends on this one's new output
        marker.unlink(missing_ok=True)
        print(f"[{stage}] notebooks/{name}.ipynb -> {executed}")
        start = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="sleepdetect-kernel-") as sockets:
                os.environ[PLAIN] = "1"  # text bars: the kernel inherits it, the log shows them
                pm.execute_notebook(
                    str(notebook_path(root, name)),
                    str(executed),
                    parameters=parameters,
                    cwd=str(root),
                    progress_bar=False,
                    log_output=True,
                    config=_local_kernel(sockets),
                )
        except pm.PapermillExecutionError as e:
            print(
                f"stage {stage!r} failed in notebooks/{name}.ipynb, cell {e.exec_count}: "
                f"{e.ename}: {e.evalue}\nthe executed copy with the traceback: {executed}"
            )
            return 1
        except OSError as e:  # papermill writes the executed copy itself, not atomically
            if is_disk_full(e):
                raise InputError(
                    f"{executed}: no space left on the device (disk full or quota exceeded) "
                    f"while papermill wrote it; stage {stage!r} stopped and runs again next "
                    "time, the outputs of earlier stages are intact. Free space under "
                    f"{out_dir} (`df -h {out_dir}`) and run the same command again"
                ) from e
            raise
        timings.append((stage, time.perf_counter() - start))
        # what the stage read, as it is now that it ran (an empty data.dir got synthetic files)
        write_record(marker, stage_record(cfg, root, stage))

    print(f"\nrun {cfg.exp_name!r} done; outputs in {out_dir}")
    for stage, seconds in timings:
        print(f"  {stage:<8} {seconds:7.1f} s")
    for line in _results(out_dir):
        print(line)
    return 0


def _scores(out_dir: Path) -> dict[str, float]:
    """Validation score of each fold and the score of each labelled submission."""

    def score(metrics: Path) -> float:
        return pl.read_csv(metrics).filter(pl.col("event") == "score")["ap"][0]

    exp = Experiment(out_dir)
    found = {m.parent.name: score(m) for m in exp.fold_metrics()}
    if exp.oof_metrics.is_file():
        found["oof"] = score(exp.oof_metrics)
    if (exp.tune / "metrics.csv").is_file():
        found["nested"] = score(exp.tune / "metrics.csv")
    for m in exp.infer_files("metrics.csv"):
        found[f"infer-{m.parent.name}"] = score(m)
    return found


def _local_kernel(sockets: str) -> KernelConfig:
    """Kernel sockets as files in `sockets` (IPC), not TCP ports: nothing leaves the machine,
    and ipykernel then has no unencrypted transport to warn about in every run's output."""
    return KernelConfig({"KernelManager": {"transport": "ipc", "ip": f"{sockets}/kernel"}})


def _results(out_dir: Path) -> list[str]:
    """Where the scores, plots and submissions of an experiment folder are."""
    lines = [f"  score {name}: {value:.4f}" for name, value in _scores(out_dir).items()]
    exp = Experiment(out_dir)
    lines += [f"  plot: {plot}" for plot in exp.fold_plots()]
    lines += [f"  submission: {sub}" for sub in exp.infer_files("submission.csv")]
    return lines
