"""`python -m sleepdetect package`: trained experiments -> what a Kaggle code competition runs.

Kaggle scores a notebook that runs offline. This builds, under `kaggle_datasets/` (generated
folders are git-ignored; `templates/` holds the metadata templates you may edit):

    <code>/     the sleepdetect wheel, the notebooks, infer.yaml (the kernel's params)
    <weights>/  <exp>/fold<k>/ model.pt + config.yaml + metrics.csv, one folder per bundle
    <wheels>/   wheels of `kaggle.wheels` (packages the Kaggle image may lack)
    <kernel>/   the 03_infer notebook with an offline install cell and its params injected

each dataset with its dataset-metadata.json and the kernel with its kernel-metadata.json. Then
it prints the kaggle CLI commands that upload them, or runs them with `upload=True`. The kaggle
package is never imported (it authenticates at import): its CLI runs as a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import nbformat

from sleepdetect.config import (
    Config,
    ConfigError,
    KaggleConfig,
    PostprocessConfig,
    apply_override,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import is_disk_full, write_json
from sleepdetect.core.locks import experiment_lock
from sleepdetect.core.paths import INPUT_PREFIX, KAGGLE_INPUT_ENV, project_root
from sleepdetect.cv.tune import load_tuned
from sleepdetect.experiment import MODEL_FILE, Experiment
from sleepdetect.inference.bundles import load_bundle
from sleepdetect.pipeline import notebook_path

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")  # the kaggle CLI's own slug rule


@dataclass
class Dataset:
    role: str  # code, weights or wheels
    folder: Path
    id: str  # user/slug


# ---------------------------------------------------------------- names and metadata


def kaggle_username(settings: KaggleConfig) -> str:
    """kaggle.username, else $KAGGLE_USERNAME, else the user name in kaggle.json."""
    name = settings.username or os.environ.get("KAGGLE_USERNAME")
    if not name:
        for path in _kaggle_json_paths():
            if path.is_file():
                name = json.loads(path.read_text()).get("username")
                break
    if not name:
        raise ConfigError(
            "no Kaggle user name: set kaggle.username in params/kaggle.yaml (or pass "
            "kaggle.username=<you>), or export KAGGLE_USERNAME=<you>"
        )
    return name


def _kaggle_json_paths() -> list[Path]:
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return [Path(os.environ["KAGGLE_CONFIG_DIR"]) / "kaggle.json"]
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [Path.home() / ".kaggle" / "kaggle.json", xdg / "kaggle" / "kaggle.json"]


def check_credentials() -> None:
    """Fail before building when the kaggle CLI could not authenticate."""
    if os.environ.get("KAGGLE_API_TOKEN") or (
        os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")
    ):
        return
    home = Path.home() / ".kaggle"
    if (home / "access_token").is_file() or (home / "access_token.txt").is_file():
        return
    for path in _kaggle_json_paths():
        if path.is_file() and {"username", "key"} <= set(json.loads(path.read_text())):
            return
    raise InputError(
        "no Kaggle credentials, so nothing was built: create an API token at "
        "https://www.kaggle.com/settings/api, then export KAGGLE_API_TOKEN=<token> (or save it "
        f"to {home / 'access_token'}, or put kaggle.json with username and key in {home}), and "
        "run the same command again"
    )


def check_dataset_metadata(meta: dict, where: str) -> None:
    """The rules `kaggle datasets create` enforces, checked before anything is uploaded."""
    title = meta.get("title", "")
    if not 6 <= len(title) <= 50:
        raise ConfigError(f"{where}: title {title!r} must have 6-50 characters")
    subtitle = meta.get("subtitle")
    if subtitle and not 20 <= len(subtitle) <= 80:
        raise ConfigError(f"{where}: subtitle {subtitle!r} must have 20-80 characters")
    check_id(meta.get("id", ""), where)
    licences = meta.get("licenses", [])
    if len(licences) != 1 or not licences[0].get("name"):
        raise ConfigError(
            f"{where}: licenses must hold exactly one licence, e.g. [{{'name': 'CC0-1.0'}}], "
            f"got {licences!r} (set kaggle.licence)"
        )


def check_id(ref: str, where: str) -> None:
    """`user/slug`, the slug lowercase letters, digits and single hyphens, 6-50 characters
    (Kaggle's web form allows 3; its CLI refuses fewer than 6)."""
    user, sep, slug = ref.partition("/")
    if not sep or not user or "/" in slug:
        raise ConfigError(f"{where}: id {ref!r} must be <user>/<slug>")
    if not SLUG.match(slug) or not 6 <= len(slug) <= 50:
        raise ConfigError(
            f"{where}: slug {slug!r} must be 6-50 lowercase letters, digits and single hyphens "
            "(change it in params/kaggle.yaml)"
        )


def dataset_metadata(root: Path, role: str, dataset_id: str, licence: str) -> dict:
    """templates/<role>.json with the id and licence of this upload."""
    meta = _template(root, f"{role}.json")
    meta.update(id=dataset_id, licenses=[{"name": licence}])
    check_dataset_metadata(meta, f"dataset-metadata.json of {dataset_id}")
    return meta


def kernel_metadata(
    root: Path, settings: KaggleConfig, user: str, datasets: list[Dataset], code_file: str
) -> dict:
    """templates/kernel.json with the id, notebook, sources and accelerator of this push."""
    meta = _template(root, "kernel.json")
    meta.update(
        id=f"{user}/{settings.kernel}",
        title=settings.kernel.replace("-", " "),  # Kaggle derives the kernel slug from its title
        code_file=code_file,
        language="python",
        kernel_type="notebook",
        is_private=settings.private,
        enable_gpu=settings.enable_gpu,
        enable_internet=False,  # code competitions score offline notebooks only
        dataset_sources=[d.id for d in datasets],
        competition_sources=[settings.competition],
    )
    check_id(meta["id"], "kernel-metadata.json")
    return meta


def _template(root: Path, name: str) -> dict:
    path = root / "kaggle_datasets" / "templates" / name
    if not path.is_file():
        raise InputError(f"{path} is missing: restore it with `git checkout {path}`")
    return json.loads(path.read_text())


# ---------------------------------------------------------------- building


def experiment_bundles(cfg: Config, root: Path, exps: list[str]) -> dict[str, list[Path]]:
    """exp name -> its trained fold folders (fold<k>/model.pt), the first `trainer.seeds`
    models of each fold."""
    out = {}
    for exp in exps:
        exp_dir = root / cfg.output.dir / exp
        folds = Experiment(exp_dir).bundles()
        if folds:  # the models of its OOF scores, as 03_infer averages them
            seeds = load_config(folds[0] / "config.yaml").trainer.seeds
            folds = Experiment(exp_dir).bundles(seeds)
        if not folds:
            raise InputError(
                f"{exp_dir}: no trained fold (fold*/model.pt); train it first with "
                f"`python -m sleepdetect run params/{exp}.yaml` or name another --exp"
            )
        for fold in folds:
            check_bundle(fold)
        out[exp] = folds
    return out


def check_bundle(folder: Path) -> None:
    """Refuse, before anything is built, a bundle the kernel could not load (a truncated
    model.pt, a config.yaml of another model...): load it as 03_infer will."""
    load_bundle(folder)


def build_code(root: Path, folder: Path, params: Config) -> None:
    """The sleepdetect wheel, built offline from this checkout, the notebooks, infer.yaml."""
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet"]
        + ["--wheel-dir", str(folder), str(root)],
        "building the sleepdetect wheel",
    )
    skip = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    shutil.copytree(root / "notebooks", folder / "notebooks", ignore=skip)
    save_config(params, folder / "infer.yaml")


def build_weights(folder: Path, bundles: dict[str, list[Path]]) -> None:
    """Each bundle in <exp>/<fold>/, without checkpoints, logs or plots."""
    for exp, folds in bundles.items():
        for fold in folds:
            dest = folder / exp / fold.name
            dest.mkdir(parents=True)
            for name in (MODEL_FILE, "config.yaml", "metrics.csv"):
                if (fold / name).is_file():
                    shutil.copy2(fold / name, dest / name)


def build_wheels(folder: Path, settings: KaggleConfig) -> None:
    """pip download of kaggle.wheels, pinned to the versions installed here (the ones the
    models were trained and tested with), for Kaggle's Python and platform."""
    specs = []
    for name in settings.wheels:
        try:
            specs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            specs.append(name)
    _run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet"]
        + ["--python-version", settings.python_version, "--platform", settings.platform]
        + ["--dest", str(folder), *specs],
        f"downloading the wheels of kaggle.wheels ({', '.join(specs)})",
    )


def kernel_params(
    base: Config,
    settings: KaggleConfig,
    weights_slug: str,
    bundles: list[str],
    tuned: PostprocessConfig | None = None,
    outside: tuple[str, ...] | list[str] = (),
) -> Config:
    """The first experiment's config (with `tuned`, the post-processing `tune` chose, when
    given), reading the competition and the weights dataset (`bundles` and the
    `ensemble.outside` ones, folders inside it) as Kaggle inputs, writing under the working
    folder, then kaggle.overrides."""
    raw = to_dict(base)
    if tuned is not None:  # the kernel has no tune/ folder: the chosen setting goes in whole
        raw["postprocess"] = to_dict(tuned)
        raw["infer"]["tuned"] = False
    raw["exp_name"] = "submission"
    raw["data"]["dir"] = f"{INPUT_PREFIX}{settings.competition}"
    raw["output"]["dir"] = "outputs"
    raw["infer"].update(
        bundles=[f"{INPUT_PREFIX}{weights_slug}/{b}" for b in bundles],
        weights=[],
        phase="test",
        copy_to="submission.csv",
    )
    raw["ensemble"]["outside"] = [f"{INPUT_PREFIX}{weights_slug}/{b}" for b in outside]
    for item in settings.overrides:
        apply_override(raw, item)
    return from_dict(Config, raw, source="kaggle.overrides")


def install_cell(slugs: list[str]) -> str:
    """Code that installs the packaged wheels offline. It runs before sleepdetect exists, so it
    looks for the datasets itself, as paths.find_input does on Kaggle."""
    return f"""\
# Offline install of sleepdetect and the wheels the Kaggle image may lack, from the attached
# datasets (written by `python -m sleepdetect package`; ${KAGGLE_INPUT_ENV} moves /kaggle/input).
import importlib
import os
import subprocess
import sys
from pathlib import Path

kaggle_input = Path(os.environ.get("{KAGGLE_INPUT_ENV}", "/kaggle/input"))
wheels = sorted(
    str(p)
    for slug in {slugs!r}
    for pattern in (slug, "*/" + slug, "*/*/" + slug)
    for p in kaggle_input.glob(pattern + "/*.whl")
)
if not any("sleepdetect-" in Path(w).name for w in wheels):
    attached = sorted(p.name for p in kaggle_input.glob("*"))
    raise FileNotFoundError(
        f"no sleepdetect wheel in {{kaggle_input}} (attached: {{attached}}): add the datasets "
        "{", ".join(slugs)} to this notebook's inputs"
    )
pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet"]
subprocess.run(pip + wheels, check=True)
importlib.invalidate_caches()
"""


def build_kernel(
    folder: Path, root: Path, params_path: str, slugs: list[str], header: str, name: str
) -> None:
    """03_infer with a header, the install cell first and the params injected after its
    parameters cell, as papermill does. `pictures = False`: the kernel's job ends with
    submission.csv, and a picture cell that fails there would fail the submission."""
    nb = nbformat.read(notebook_path(root, "03_infer"), as_version=4)
    cells = [nbformat.v4.new_markdown_cell(header), nbformat.v4.new_code_cell(install_cell(slugs))]
    for cell in nb.cells:
        cells.append(cell)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            injected = f"params_file = {params_path!r}\noverrides = []\npictures = False\n"
            cells.append(nbformat.v4.new_code_cell(injected))
            cells[-1].metadata["tags"] = ["injected-parameters"]
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.cells = cells
    nbformat.write(nb, folder / name)


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise InputError(f"{what} failed:\n{shlex.join(cmd)}\n{done.stderr.strip()}")


def _rebuild(folder: Path, build) -> None:
    """Build into a sibling and swap it in, so a failed build keeps the previous one."""
    tmp = folder.with_name(f".{folder.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _shown(path: Path, root: Path) -> Path:
    """Relative to the checkout, where the printed commands are run."""
    return path.relative_to(root) if path.is_relative_to(root) else path


def git_version(root: Path) -> str:
    """The commit the code dataset is built from (`-dirty` with uncommitted changes)."""
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "no-git"


# ---------------------------------------------------------------- uploading


def upload_commands(
    datasets: list[Dataset], kernel: Path, message: str, private: bool
) -> tuple[list[list[str]], list[list[str]]]:
    """(first upload, later uploads): the kaggle commands for each, ending with the push."""
    first, later = [], []
    for d in datasets:
        first.append(["kaggle", "datasets", "create", "-p", str(d.folder), "-r", "tar"])
        if not private:
            first[-1].append("--public")
        later.append(["kaggle", "datasets", "version", "-p", str(d.folder), "-r", "tar"])
        later[-1] += ["-m", message]
    push = ["kaggle", "kernels", "push", "-p", str(kernel)]
    return [*first, push], [*later, push]


def _kaggle_cli() -> str:
    found = shutil.which("kaggle") or str(Path(sys.executable).with_name("kaggle"))
    if not Path(found).is_file():
        raise InputError("the kaggle CLI is not installed here: pip install kaggle")
    return found


def upload(datasets: list[Dataset], kernel: Path, message: str, private: bool) -> None:
    """Create each dataset the first time, add a version after, then push the kernel."""
    cli = _kaggle_cli()
    first, later = upload_commands(datasets, kernel, message, private)
    for d, create, version in zip(datasets, first, later, strict=False):
        status = subprocess.run([cli, "datasets", "status", d.id], capture_output=True)
        cmd = version if status.returncode == 0 else create
        print("$", shlex.join(cmd), flush=True)
        _run([cli, *cmd[1:]], f"uploading {d.id}")
    print("$", shlex.join(first[-1]), flush=True)
    _run([cli, *first[-1][1:]], f"pushing {kernel}")


# ---------------------------------------------------------------- the command


def package(
    cfg: Config, exps: list[str], do_upload: bool = False, out: str | Path = "kaggle_datasets"
) -> tuple[list[Dataset], Path]:
    """Build the datasets and the kernel folder for `exps` (the first experiment's config
    drives post-processing); print the upload commands, or run them.

    Holds the lock of `out` (the folder it writes) and of each experiment folder it reads, so
    it is refused at once while another `package` writes `out` or a `run` writes one of `exps`.
    """
    root = project_root()
    if root is None:
        raise InputError("run `python -m sleepdetect package` inside the sleepdetect checkout")
    reads = [root / cfg.output.dir / exp for exp in dict.fromkeys(exps)]
    with ExitStack() as locks:
        for folder in [root / out, *(d for d in reads if d.is_dir())]:
            locks.enter_context(experiment_lock(folder))
        try:
            return _package(cfg, exps, do_upload, out, root)
        except OSError as e:  # a full disk in a build: _rebuild kept the previous folder
            if is_disk_full(e, root / out):
                raise InputError(
                    f"{root / out}: no space left on the device (disk full or quota exceeded) "
                    "while building it; the folders built before are intact and the partial "
                    f"one was removed. Free space (`df -h {root / out}`) and run the same "
                    "command again"
                ) from e
            raise


def _package(
    cfg: Config, exps: list[str], do_upload: bool, out: str | Path, root: Path
) -> tuple[list[Dataset], Path]:
    settings = cfg.kaggle
    user = kaggle_username(settings)
    if do_upload:
        check_credentials()
    out = root / out
    bundles = experiment_bundles(cfg, root, exps)
    slugs = {
        "code": settings.code_dataset,
        "weights": settings.weights_dataset,
        "wheels": settings.wheels_dataset,
    }
    if not settings.wheels:
        del slugs["wheels"]
    datasets = [Dataset(role, out / slug, f"{user}/{slug}") for role, slug in slugs.items()]
    code_file = f"{settings.kernel}.ipynb"
    metas = {d.role: dataset_metadata(root, d.role, d.id, settings.licence) for d in datasets}
    kernel_meta = kernel_metadata(root, settings, user, datasets, code_file)
    base = load_config(bundles[exps[0]][0] / "config.yaml")
    inside = [f"{exp}/{fold.name}" for exp, folds in bundles.items() for fold in folds]
    # ensemble.outside bundles travel too, each in its own outside<i>/ folder
    outside = {f"outside{i}": [root / b] for i, b in enumerate(base.ensemble.outside)}
    for (folder,) in outside.values():
        if not (folder / MODEL_FILE).is_file():
            raise InputError(
                f"{folder}: no model.pt; ensemble.outside names a bundle that is not trained "
                "(train it first, or drop it from ensemble.outside)"
            )
        check_bundle(folder)
    bundles |= outside
    tuned = None
    if base.infer.tuned:
        tuned = load_tuned(root / base.exp_dir)
    params = kernel_params(
        base,
        settings,
        settings.weights_dataset,
        inside,
        tuned,
        [f"{name}/{folds[0].name}" for name, folds in outside.items()],
    )
    version = git_version(root)
    message = f"{version} {' '.join(exps)}"

    builders = {
        "code": lambda f: build_code(root, f, params),
        "weights": lambda f: build_weights(f, bundles),
        "wheels": lambda f: build_wheels(f, settings),
    }
    for d in datasets:
        print(f"building {_shown(d.folder, root)} ({d.role})", flush=True)

        def build(tmp: Path, d: Dataset = d) -> None:
            builders[d.role](tmp)
            write_json(tmp / "dataset-metadata.json", metas[d.role])

        _rebuild(d.folder, build)

    kernel = out / settings.kernel
    installed = [d.folder.name for d in datasets if d.role != "weights"]
    header = (
        f"# {settings.kernel}\n\nGenerated by `python -m sleepdetect package` from "
        f"`notebooks/03_infer` at {version}; experiments: {', '.join(exps)}. Build it again "
        "rather than editing it here."
    )

    def build_kernel_folder(tmp: Path) -> None:
        params_path = f"{INPUT_PREFIX}{settings.code_dataset}/infer.yaml"
        build_kernel(tmp, root, params_path, installed, header, code_file)
        write_json(tmp / "kernel-metadata.json", kernel_meta)

    print(f"building {_shown(kernel, root)} (kernel)", flush=True)
    _rebuild(kernel, build_kernel_folder)

    submit = " ".join(
        [
            shlex.join(["kaggle", "competitions", "submit", settings.competition]),
            f"-k {user}/{settings.kernel} -v <version>",
            shlex.join(["-f", "submission.csv", "-m", message]),
        ]
    )
    if do_upload:
        upload(datasets, kernel, message, settings.private)
    else:
        shown = [replace(d, folder=_shown(d.folder, root)) for d in datasets]
        first, later = upload_commands(shown, _shown(kernel, root), message, settings.private)
        print("\nnot uploaded. The first time, run:")
        print("\n".join(shlex.join(c) for c in first))
        print("and for each later version:")
        print("\n".join(shlex.join(c) for c in later))
    print(
        f"\nwhen its run is complete (kaggle kernels status {user}/{settings.kernel}), submit "
        f"it on the competition page or with:\n{submit}"
    )
    return datasets, kernel
