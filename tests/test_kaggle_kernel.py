"""The packaged kernel, run as Kaggle would: offline, from the packaged wheels only.

A temporary folder stands in for Kaggle: `kaggle/input/<slug>/` holds the competition files
and the three packaged datasets (as Kaggle unpacks them), `kaggle/working/` is the kernel's
working folder. The kernel's Python is a fresh virtual environment whose only other packages
are an "image": this environment's site-packages less sleepdetect and every package the wheels
dataset ships, so those can only come from the packaged wheels (pip --no-index, no pip config).
Sockets are blocked in the kernel and in the pip it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import polars as pl
import pytest

from sleepdetect.config import load_config
from sleepdetect.experiment import Experiment
from sleepdetect.kaggle import package
from tiny_run import TINY_DEMO

REPO = Path(__file__).resolve().parents[1]
BLOCK_SOCKETS = """\
import socket

def _blocked(*args, **kwargs):
    raise OSError("network blocked: this simulates an offline Kaggle kernel")

socket.socket.connect = socket.socket.connect_ex = _blocked
socket.create_connection = socket.getaddrinfo = _blocked
"""


def image_without(dists: list[str], image: Path) -> Path:
    """Symlinks to this environment's site-packages, less the files of `dists`."""
    hidden = set()
    for name in dists:  # their files' top folders, .dist-info included
        hidden |= {Path(str(f)).parts[0] for f in metadata.distribution(name).files or []}
    site = Path(sysconfig.get_paths()["purelib"])
    image.mkdir()
    for entry in site.iterdir():
        if entry.name not in hidden and entry.suffix != ".pth" and "sleepdetect" not in entry.name:
            (image / entry.name).symlink_to(entry)
    return image


@pytest.mark.slow
def test_packaged_kernel_runs_offline_and_matches_the_local_run(tmp_path, monkeypatch, capsys):
    from sleepdetect.pipeline import run

    monkeypatch.chdir(REPO)
    data, out = tmp_path / "data", tmp_path / "outputs"
    # a trained experiment and its local submission
    local = [f"data.dir={data}", f"output.dir={out}", *TINY_DEMO]
    assert run(REPO / "params" / "demo.yaml", local) == 0
    local_submission = pl.read_csv(Experiment(out / "demo").submission("test"))

    cfg = load_config(REPO / "params" / "kaggle.yaml", [f"output.dir={out}", "kaggle.username=me"])
    datasets, kernel = package(cfg, ["demo"], out=tmp_path / "kaggle_datasets")
    printed = capsys.readouterr().out
    assert "kaggle kernels push -p " in printed

    # Kaggle's folders: inputs by slug, unpacked, and the working folder
    kaggle = tmp_path / "kaggle"
    competition = kaggle / "input" / cfg.kaggle.competition
    competition.mkdir(parents=True)
    shutil.copy(data / "test_series.parquet", competition)
    for d in datasets:
        shutil.copytree(d.folder, kaggle / "input" / d.folder.name)
    working = kaggle / "working"
    working.mkdir()

    # the kernel's Python: a fresh venv seeing the image, sockets blocked
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    image = image_without(cfg.kaggle.wheels, tmp_path / "image")
    Path(site, "kaggle_image.pth").write_text(f"{image}\n")
    Path(site, "sitecustomize.py").write_text(BLOCK_SOCKETS)
    blocked = subprocess.run(
        [python, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
        capture_output=True,
        text=True,
    )
    assert "network blocked" in blocked.stderr
    missing = subprocess.run([python, "-c", "import segmentation_models_pytorch"], check=False)
    assert missing.returncode != 0, "the image must not hold what the wheels dataset ships"

    spec = tmp_path / "jupyter" / "kernels" / "kaggle-sim"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "simulated Kaggle kernel",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("SLEEPDETECT_KAGGLE_INPUT", str(kaggle / "input"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no index, no find-links but ours
    for name in [k for k in os.environ if k.startswith("PIP_") and k != "PIP_CONFIG_FILE"]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(working)

    import papermill

    notebook = kernel / f"{cfg.kaggle.kernel}.ipynb"
    papermill.execute_notebook(
        str(notebook), str(tmp_path / "executed.ipynb"), kernel_name="kaggle-sim", cwd=working
    )

    submission = pl.read_csv(working / "submission.csv")
    assert submission.columns == ["row_id", "series_id", "step", "event", "score"]
    assert len(submission) > 0
    assert submission.equals(local_submission)
    installed = subprocess.run(
        [python, "-m", "pip", "list", "--path", site, "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {p["name"].lower().replace("_", "-") for p in json.loads(installed)}
    assert {"sleepdetect", *cfg.kaggle.wheels} <= names
