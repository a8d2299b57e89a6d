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

import hashlib
import itertools
import json
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

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
from sleepdetect.core.files import is_disk_full, write_json, write_text
from sleepdetect.core.fingerprints import content_fingerprint, file_hash
from sleepdetect.core.locks import experiment_lock
from sleepdetect.core.paths import project_root
from sleepdetect.core.progress import PLAIN
from sleepdetect.data.prepare import source_files

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
    return {
        "prepare": cfg.exp_dir / "prepared" / cfg.prepare.phase / "manifest.json",
        "train": cfg.exp_dir / "oof.parquet",
        "infer": cfg.exp_dir / "infer" / cfg.infer.phase / "submission.csv",
    }[stage]


def stage_inputs(cfg: Config, root: Path, stage: str) -> dict[str, str | None]:
    """The files a stage reads besides its config, by content (None: not there yet): the
    competition files of its phase, the `init_from` weights, `windows.extra`'s prepared series,
    the bundles it averages. A file replaced under the same path makes the stage run again."""
    phase = cfg.infer.phase if stage == "infer" else cfg.prepare.phase
    files = {f"data {k}": p for k, p in source_files(root / cfg.data.dir, phase).items()}
    hashed = {}
    if stage == "train" and cfg.model.init_from:
        hashed["init_from"] = root / cfg.model.init_from / "model.pt"
    if stage == "train":  # the manifests of windows.extra hold their sources' fingerprints
        hashed |= {
            f"extra {d}": root / d / "prepared/train/manifest.json" for d in cfg.windows.extra
        }
    if stage in ("train", "infer"):
        hashed |= {f"outside {b}": root / b / "model.pt" for b in cfg.ensemble.outside}
    if stage == "infer" and cfg.infer.baseline is None:  # a baseline reads no bundle
        bundles = cfg.infer.bundles or sorted(p.name for p in (root / cfg.exp_dir).glob("fold*"))
        base = root if cfg.infer.bundles else root / cfg.exp_dir
        hashed |= {f"bundle {b}": base / b / "model.pt" for b in bundles}
    found = {k: content_fingerprint(p) if p.is_file() else None for k, p in files.items()}
    return found | {k: file_hash(p) if p.is_file() else None for k, p in hashed.items()}


def _fingerprint(cfg: Config, root: Path, stage: str) -> str:
    d = to_dict(cfg)
    inputs = {k: d[k] for k in STAGE_KEYS[stage]} | {"files": stage_inputs(cfg, root, stage)}
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def notebook_path(root: Path, name: str) -> Path:
    """The .ipynb of a stage, made from its .py pair (the source of truth) when missing."""
    ipynb = root / "notebooks" / f"{name}.ipynb"
    if not ipynb.is_file():
        import jupytext

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
    import papermill as pm

    save_config(cfg, out_dir / "config.yaml")
    parameters = {"params_file": str(Path(params).resolve()), "overrides": list(overrides)}

    timings = []
    rerun = force
    for stage in todo:
        name = STAGES[stage]
        executed = out_dir / f"{name}.ipynb"
        marker = out_dir / ".stages" / f"{stage}.json"
        fingerprint = _fingerprint(cfg, root, stage)
        done = marker.is_file() and json.loads(marker.read_text())["fingerprint"] == fingerprint
        if not rerun and done and (root / stage_output(cfg, stage)).is_file():
            print(f"[{stage}] complete with these params: skipped (--force reruns it)")
            continue
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
        fingerprint = _fingerprint(cfg, root, stage)
        write_json(marker, {"fingerprint": fingerprint, "output": str(stage_output(cfg, stage))})

    print(f"\nrun {cfg.exp_name!r} done; outputs in {out_dir}")
    for stage, seconds in timings:
        print(f"  {stage:<8} {seconds:7.1f} s")
    for line in _results(out_dir):
        print(line)
    return 0


def _scores(out_dir: Path) -> dict[str, float]:
    """Validation score of each fold and the score of each labelled submission."""
    import polars as pl

    def score(metrics: Path) -> float:
        return pl.read_csv(metrics).filter(pl.col("event") == "score")["ap"][0]

    found = {m.parent.name: score(m) for m in sorted(out_dir.glob("fold*/metrics.csv"))}
    if (out_dir / "oof_metrics.csv").is_file():
        found["oof"] = score(out_dir / "oof_metrics.csv")
    if (out_dir / "tune" / "metrics.csv").is_file():
        found["nested"] = score(out_dir / "tune" / "metrics.csv")
    for m in sorted(out_dir.glob("infer/*/metrics.csv")):
        found[f"infer-{m.parent.name}"] = score(m)
    return found


def _local_kernel(sockets: str) -> KernelConfig:
    """Kernel sockets as files in `sockets` (IPC), not TCP ports: nothing leaves the machine,
    and ipykernel then has no unencrypted transport to warn about in every run's output."""
    return KernelConfig({"KernelManager": {"transport": "ipc", "ip": f"{sockets}/kernel"}})


def _results(out_dir: Path) -> list[str]:
    """Where the scores, plots and submissions of an experiment folder are."""
    lines = [f"  score {name}: {value:.4f}" for name, value in _scores(out_dir).items()]
    lines += [f"  plot: {plot}" for plot in sorted(out_dir.glob("fold*/*.png"))]
    lines += [f"  submission: {sub}" for sub in sorted(out_dir.glob("infer/*/submission.csv"))]
    return lines
