"""Where things are: the checkout locally, `/kaggle/input` and `/kaggle/working` on Kaggle.

Relative paths in params mean the checkout, wherever a notebook starts (Kaggle: the working
folder, `/kaggle/working`). A path written `input:<slug>/rest` means an attached Kaggle input
(a dataset or the competition), found by its slug so one params file works on Kaggle and
locally:

1. `$SLEEPDETECT_INPUT_<SLUG>` (the slug upper-cased, `-` as `_`) when set;
2. `<kaggle input>/<slug>`, or one or two folders deeper (Kaggle nests some mounts), where the
   Kaggle input folder is `$SLEEPDETECT_KAGGLE_INPUT`, or `/kaggle/input`;
3. `kaggle_datasets/<slug>` (what `python -m sleepdetect package` builds) or `data/<slug>` in
   the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from sleepdetect.errors import InputError

INPUT_PREFIX = "input:"
KAGGLE_INPUT_ENV = "SLEEPDETECT_KAGGLE_INPUT"


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


def kaggle_input() -> Path:
    """Where Kaggle mounts a kernel's inputs (tests point it at a temporary folder)."""
    return Path(os.environ.get(KAGGLE_INPUT_ENV, "/kaggle/input"))


def input_env_var(slug: str) -> str:
    """`sleepdetect-weights` -> `SLEEPDETECT_INPUT_SLEEPDETECT_WEIGHTS`."""
    return "SLEEPDETECT_INPUT_" + slug.upper().replace("-", "_")


def find_input(slug: str) -> Path:
    """The folder of the input `slug`, looked up in the order of the module docstring."""
    env = input_env_var(slug)
    if os.environ.get(env):
        path = Path(os.environ[env])
        if not path.is_dir():
            raise InputError(f"${env} is {path}, which is not a folder; point it at {slug}")
        return path
    root = kaggle_input()
    for pattern in (slug, f"*/{slug}", f"*/*/{slug}"):
        found = sorted(p for p in root.glob(pattern) if p.is_dir())
        if found:
            return found[0]
    checkout = project_root() or Path.cwd()
    for folder in (checkout / "kaggle_datasets" / slug, checkout / "data" / slug):
        if folder.is_dir():
            return folder
    mounted = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    raise InputError(
        f"input {slug!r} not found: {root} holds {', '.join(mounted) or 'nothing'}"
        f"{'' if root.is_dir() else ' (it does not exist)'}, and neither "
        f"{checkout}/kaggle_datasets/{slug} nor {checkout}/data/{slug} exists. On Kaggle, add "
        f"{slug} to the notebook's inputs (kernel-metadata.json: dataset_sources or "
        f"competition_sources); elsewhere set {env}=/path/to/{slug}"
    )


def resolve_path(path: str) -> str:
    """`input:<slug>/rest` -> the found folder / rest; any other path as it is."""
    if not path.startswith(INPUT_PREFIX):
        return path
    slug, _, rest = path.removeprefix(INPUT_PREFIX).strip("/").partition("/")
    if not slug:
        raise InputError(f"{path!r} names no input; write input:<slug>/path/inside")
    return str(find_input(slug) / rest) if rest else str(find_input(slug))
