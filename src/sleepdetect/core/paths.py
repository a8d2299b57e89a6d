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

The rest of the path is looked up in that folder, or one or two folders deeper, with a note:
a dataset uploaded with `kaggle datasets create -r tar` is sometimes unpacked into a folder of
its own name (`<slug>/<slug>/exp/fold0`). An archive Kaggle left unpacked (`exp.tar` where
`exp/` should be) is named by `archive_instead`, so the error says so.

A path written `shipped:<name>` is a bundle that ships inside the package
(`src/sleepdetect/shipped/<name>/`), so it is found in a checkout, an installed wheel and the
Kaggle kernel alike.

A folder holding `ensemble.yaml` is an ensemble: several bundles, its `members`, averaged
wherever bundles are named (`bundle_folders`); the shipped default model is one.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from sleepdetect.core.errors import InputError

INPUT_PREFIX = "input:"
SHIPPED_PREFIX = "shipped:"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "shipped"
KAGGLE_INPUT_ENV = "SLEEPDETECT_KAGGLE_INPUT"
ENSEMBLE_FILE = "ensemble.yaml"  # in an ensemble folder: `members`, its bundle folders


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
    """`input:<slug>/rest` -> the found folder / rest; `shipped:<name>` -> the package's
    shipped bundle; any other path as it is."""
    if path.startswith(SHIPPED_PREFIX):
        return str(shipped(path.removeprefix(SHIPPED_PREFIX)))
    if not path.startswith(INPUT_PREFIX):
        return path
    slug, _, rest = path.removeprefix(INPUT_PREFIX).strip("/").partition("/")
    if not slug:
        raise InputError(f"{path!r} names no input; write input:<slug>/path/inside")
    root = find_input(slug)
    if not rest:
        return str(root)
    found = nested(root / rest, below=root)
    if found is None or found == root / rest:
        return str(root / rest)
    print(f"note: {path} is {found}: the dataset {slug} was unpacked a folder deeper")
    return str(found)


def shipped(name: str) -> Path:
    """The folder of the bundle (or ensemble) shipped as `name`, or an InputError listing
    those there are."""

    def is_model(folder: Path) -> bool:
        return (folder / "model.pt").is_file() or (folder / ENSEMBLE_FILE).is_file()

    folder = SHIPPED_DIR / name
    if not name or not is_model(folder):
        there = sorted(p.name for p in SHIPPED_DIR.iterdir() if is_model(p))
        raise InputError(
            f"shipped:{name} is not a bundle shipped with sleepdetect; there are: "
            f"{', '.join(there) or 'none'}"
        )
    return folder


def bundle_folders(path: str) -> list[str]:
    """The bundle folders `path` stands for: itself, or an ensemble folder's members (the
    folders its ensemble.yaml lists, inside it), which are averaged like any list of bundles."""
    listing = Path(path) / ENSEMBLE_FILE
    if not listing.is_file():
        return [path]
    fix = "it must hold `members:`, a list of bundle folders inside it (model.pt + config.yaml)"
    try:
        members = (yaml.safe_load(listing.read_text()) or {}).get("members")
    except (yaml.YAMLError, AttributeError) as e:
        raise InputError(f"{listing}: not an ensemble listing ({e}); {fix}") from e
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise InputError(f"{listing}: members is {members!r}; {fix}")
    missing = [m for m in members if not (Path(path) / m / "model.pt").is_file()]
    if missing:
        raise InputError(f"{listing}: member {missing[0]} has no model.pt in {path}; {fix}")
    return [str(Path(path) / m) for m in members]


ARCHIVES = (".tar", ".tar.gz", ".tgz", ".zip")
_DEEPER = ("*", "*/*")  # one or two folders deeper


def nested(path: Path, marker: str | None = None, below: Path | None = None) -> Path | None:
    """`path`, or where an unpacking one or two folders deeper put it, or None.

    With `marker` (a file name), the folder holding it: `path` itself, else the one folder
    found at `path/*/` or `path/*/*/` (None when there are several: the caller names them).
    Without, `path` when it exists. Either way a missing `path` is also looked for with one
    or two folders inserted below its deepest existing ancestor (or below `below`, when
    given): `<slug>/exp/fold0` is found at `<slug>/<slug>/exp/fold0`.
    """

    def holds(p: Path) -> bool:
        return (p / marker).is_file() if marker else p.exists()

    if holds(path):
        return path
    if marker and path.is_dir():
        found = nested_candidates(path, marker)
        return found[0] if len(found) == 1 else None
    top = below if below is not None else path.parent
    while not top.is_dir() and top != top.parent:
        top = top.parent
    if top == top.parent or not path.is_relative_to(top):
        return None  # never search the whole file system
    rest = path.relative_to(top)
    for pattern in _DEEPER:
        found = sorted(p for p in top.glob(f"{pattern}/{rest}") if holds(p))
        if found:
            return found[0]
    return None


def nested_candidates(folder: Path, marker: str) -> list[Path]:
    """Folders one (else two) levels below `folder` that hold `marker`."""
    for pattern in _DEEPER:
        found = sorted(p.parent for p in folder.glob(f"{pattern}/{marker}") if p.is_file())
        if found:
            return found
    return []


def archive_instead(path: Path) -> Path | None:
    """An archive lying where `path` or one of its missing parents should be a folder
    (`exp.tar` for `exp/fold0`), or beside them in the deepest folder that exists: what Kaggle
    leaves when it does not unpack a dataset uploaded with `-r tar`."""
    p = path
    while not p.is_dir() and p != p.parent:
        for suffix in ARCHIVES:
            if p.with_name(p.name + suffix).is_file():
                return p.with_name(p.name + suffix)
        p = p.parent
    if p == path or p == p.parent:
        return None
    found = sorted(a for suffix in ARCHIVES for a in p.glob(f"*{suffix}") if a.is_file())
    return found[0] if found else None
