"""Where things are: relative paths in params mean the checkout, wherever a notebook starts."""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The checkout holding this project (a folder with pyproject.toml and params/), if any."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "params").is_dir():
            return folder
    return None


def enter_project_root() -> Path:
    """Make relative paths in params mean the same from a notebook as from the command line.

    Jupyter starts notebooks in notebooks/; papermill and the CLI in the checkout. Both then
    resolve `params/demo.yaml`, `data/`, `outputs/` from the checkout. Elsewhere (Kaggle) the
    working folder stays as it is.
    """
    root = project_root()
    if root is not None:
        os.chdir(root)
    return Path.cwd()
