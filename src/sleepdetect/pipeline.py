"""`python -m sleepdetect run`: execute the notebooks through papermill, stage by stage.

Each stage's executed copy goes to `<output.dir>/<exp_name>/NN_name.ipynb`; the source
notebooks are never written. A failed stage stops the run and names the notebook and cell.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from sleepdetect.config import ConfigError, load_config, save_config
from sleepdetect.paths import project_root

# Stage name -> notebook, in pipeline order.
STAGES = {"prepare": "01_prepare", "train": "02_train", "infer": "03_infer"}


def notebook_path(root: Path, name: str) -> Path:
    """The .ipynb of a stage, made from its .py pair (the source of truth) when missing."""
    ipynb = root / "notebooks" / f"{name}.ipynb"
    if not ipynb.is_file():
        import jupytext

        pair = ipynb.with_suffix(".py")
        if not pair.is_file():
            raise FileNotFoundError(f"{ipynb} and {pair} are both missing")
        jupytext.write(jupytext.read(pair), ipynb)
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
) -> int:
    """Run `stages` (default: every stage whose notebook exists) with the params injected."""
    import papermill as pm

    cfg = load_config(params, overrides)  # fail on a bad key before any notebook starts
    root = project_root() or Path.cwd()
    todo = list(stages) if stages else available_stages(root)
    unknown = [s for s in todo if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage {unknown[0]!r}; stages: {', '.join(STAGES)}")
    out_dir = root / cfg.exp_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    parameters = {"params_file": str(Path(params).resolve()), "overrides": list(overrides)}

    timings = []
    for stage in todo:
        name = STAGES[stage]
        executed = out_dir / f"{name}.ipynb"
        print(f"[{stage}] notebooks/{name}.ipynb -> {executed}")
        start = time.perf_counter()
        try:
            pm.execute_notebook(
                str(notebook_path(root, name)),
                str(executed),
                parameters=parameters,
                cwd=str(root),
                progress_bar=False,
                log_output=True,
            )
        except pm.PapermillExecutionError as e:
            print(
                f"stage {stage!r} failed in notebooks/{name}.ipynb, cell {e.exec_count}: "
                f"{e.ename}: {e.evalue}\nthe executed copy with the traceback: {executed}"
            )
            return 1
        timings.append((stage, time.perf_counter() - start))

    print(f"\nrun {cfg.exp_name!r} done; outputs in {out_dir}")
    for stage, seconds in timings:
        print(f"  {stage:<8} {seconds:7.1f} s")
    for line in _results(out_dir):
        print(line)
    return 0


def _results(out_dir: Path) -> list[str]:
    """Where the scores, plots and submissions of an experiment folder are."""
    import polars as pl

    lines = []

    def score(metrics: Path) -> float:
        return pl.read_csv(metrics).filter(pl.col("event") == "score")["ap"][0]

    lines = []
    for metrics in sorted(out_dir.glob("fold*/metrics.csv")):
        lines.append(f"  validation score {metrics.parent.name}: {score(metrics):.4f}  ({metrics})")
    for plot in sorted(out_dir.glob("fold*/*.png")):
        lines.append(f"  plot: {plot}")
    for sub in sorted(out_dir.glob("infer/*/submission.csv")):
        lines.append(f"  submission: {sub}")
        if sub.with_name("metrics.csv").is_file():
            lines.append(f"  score of that submission: {score(sub.with_name('metrics.csv')):.4f}")
    return lines
