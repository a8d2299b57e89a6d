"""Kaggle packaging: inputs by slug, metadata rules, what is built, the commands it prints/runs.

The kernel run offline from the packaged wheels is in test_kaggle_kernel.py (slow).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import nbformat
import pytest
import torch
import yaml

from sleepdetect.cli import main
from sleepdetect.config import Config, ConfigError, from_dict, load_config, save_config
from sleepdetect.core.errors import InputError
from sleepdetect.core.paths import find_input, input_env_var, resolve_path
from sleepdetect.kaggle import (
    _rebuild,
    check_dataset_metadata,
    git_version,
    kaggle_username,
    package,
)
from sleepdetect.models import build_model

REPO = Path(__file__).resolve().parents[1]
SLUGS = ("sleepdetect-code", "sleepdetect-weights")


@pytest.fixture
def no_kaggle_env(monkeypatch, tmp_path):
    """No credentials or user name from this machine, and a Kaggle input folder of our own."""
    for name in [k for k in os.environ if k.startswith(("KAGGLE_", "SLEEPDETECT_INPUT_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("SLEEPDETECT_KAGGLE_INPUT", str(tmp_path / "kaggle" / "input"))
    monkeypatch.chdir(tmp_path)  # no checkout here: "locally" means tmp_path


@pytest.fixture
def checkout(no_kaggle_env, monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.fixture
def trained(tmp_path):
    """outputs/tiny/fold0 and fold1: bundles as 02_train leaves them."""
    cfg = load_config(
        None,
        [
            "exp_name=tiny",
            "model.name=DayGRU",
            "model.downsample_rate=12",
            "model.params={hidden_size: 8, num_layers: 1}",
            "prepare.features=[anglez, enmo]",
            "postprocess.distance=99",
        ],
    )
    for fold in (0, 1):
        path = tmp_path / "outputs" / "tiny" / f"fold{fold}"
        path.mkdir(parents=True)
        torch.save(build_model(cfg.model, in_channels=2).state_dict(), path / "model.pt")
        save_config(cfg, path / "config.yaml")
        (path / "metrics.csv").write_text("event,tolerance,ap\n")
    return tmp_path / "outputs"


def packaging_config(outputs: Path, *overrides: str) -> Config:
    base = [f"output.dir={outputs}", "kaggle.username=me", "kaggle.wheels=[]"]
    return load_config(REPO / "params" / "kaggle.yaml", [*base, *overrides])


# ---------------------------------------------------------------- inputs by slug


def test_inputs_are_found_by_slug_env_first_then_kaggle_then_checkout(
    no_kaggle_env, tmp_path, monkeypatch
):
    mounted = tmp_path / "kaggle" / "input"
    (mounted / "competitions" / "some-comp").mkdir(parents=True)  # a nested mount
    assert find_input("some-comp") == mounted / "competitions" / "some-comp"
    (mounted / "some-comp").mkdir()
    assert find_input("some-comp") == mounted / "some-comp"
    mine = tmp_path / "elsewhere"
    mine.mkdir()
    monkeypatch.setenv(input_env_var("some-comp"), str(mine))
    assert input_env_var("some-comp") == "SLEEPDETECT_INPUT_SOME_COMP"
    assert find_input("some-comp") == mine
    assert resolve_path("input:some-comp/a/b.yaml") == str(mine / "a" / "b.yaml")
    assert resolve_path("data/cmi") == "data/cmi"
    # locally: what `package` builds, or data/<slug>
    (tmp_path / "kaggle_datasets" / "built-here").mkdir(parents=True)
    assert find_input("built-here") == tmp_path / "kaggle_datasets" / "built-here"
    (tmp_path / "data" / "downloaded").mkdir(parents=True)
    assert find_input("downloaded") == tmp_path / "data" / "downloaded"


def test_a_missing_input_lists_what_is_mounted(no_kaggle_env, tmp_path, monkeypatch):
    for name in ("sleepdetect-code", "other-data"):
        (tmp_path / "kaggle" / "input" / name).mkdir(parents=True)
    with pytest.raises(InputError) as e:
        find_input("sleepdetect-weights")
    msg = str(e.value)
    assert "other-data, sleepdetect-code" in msg
    assert "SLEEPDETECT_INPUT_SLEEPDETECT_WEIGHTS=" in msg and "dataset_sources" in msg
    monkeypatch.setenv("SLEEPDETECT_INPUT_SLEEPDETECT_WEIGHTS", str(tmp_path / "nope"))
    with pytest.raises(InputError, match=r"\$SLEEPDETECT_INPUT_SLEEPDETECT_WEIGHTS is .*nope"):
        find_input("sleepdetect-weights")


def test_params_read_inputs_by_slug(no_kaggle_env, tmp_path):
    code = tmp_path / "kaggle" / "input" / "my-code"
    code.mkdir(parents=True)
    (tmp_path / "kaggle" / "input" / "comp-data").mkdir()
    (code / "infer.yaml").write_text(
        yaml.safe_dump(
            {"data": {"dir": "input:comp-data"}, "infer": {"bundles": ["input:my-code/f0"]}}
        )
    )
    cfg = load_config("input:my-code/infer.yaml")
    assert cfg.data.dir == str(tmp_path / "kaggle" / "input" / "comp-data")
    assert cfg.infer.bundles == [str(code / "f0")]


# ---------------------------------------------------------------- names and metadata

GOOD = {"title": "sleepdetect code", "id": "me/sleepdetect-code", "licenses": [{"name": "other"}]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"title": "short"}, "title 'short' must have 6-50"),
        ({"title": "x" * 51}, "must have 6-50"),
        ({"subtitle": "too short"}, "subtitle 'too short' must have 20-80"),
        ({"id": "sleepdetect-code"}, "must be <user>/<slug>"),
        ({"id": "me/abc"}, "slug 'abc' must be 6-50"),
        ({"id": "me/" + "a" * 51}, "must be 6-50"),
        ({"id": "me/Sleep_Code"}, "lowercase letters, digits and single hyphens"),
        ({"id": "me/sleep--code"}, "single hyphens"),
        ({"licenses": []}, "exactly one licence"),
        ({"licenses": [{"name": "CC0-1.0"}, {"name": "other"}]}, "exactly one licence"),
    ],
)
def test_dataset_metadata_rules(change, message):
    check_dataset_metadata(GOOD, "x")
    with pytest.raises(ConfigError, match=message):
        check_dataset_metadata({**GOOD, **change}, "x")


def test_user_name_from_params_then_env_then_kaggle_json(no_kaggle_env, tmp_path, monkeypatch):
    k = load_config(None).kaggle
    with pytest.raises(ConfigError, match="kaggle.username=<you>.*KAGGLE_USERNAME"):
        kaggle_username(k)
    (tmp_path / "home" / ".kaggle").mkdir(parents=True)
    (tmp_path / "home" / ".kaggle" / "kaggle.json").write_text('{"username": "fromjson"}')
    assert kaggle_username(k) == "fromjson"
    monkeypatch.setenv("KAGGLE_USERNAME", "fromenv")
    assert kaggle_username(k) == "fromenv"
    k.username = "fromparams"
    assert kaggle_username(k) == "fromparams"


# ---------------------------------------------------------------- building


def test_package_builds_datasets_kernel_and_prints_the_commands(
    checkout, trained, tmp_path, capsys
):
    cfg = packaging_config(
        trained, "kaggle.enable_gpu=false", "kaggle.overrides=[infer.batch_size=3]"
    )
    datasets, kernel = package(cfg, ["tiny"], out=tmp_path / "kd")
    assert [d.role for d in datasets] == ["code", "weights"]  # no wheels asked for: none built

    code, weights = (d.folder for d in datasets)
    assert [p.name for p in code.glob("*.whl")] == ["sleepdetect-0.1.0-py3-none-any.whl"]
    assert (code / "notebooks" / "03_infer.py").is_file()
    for fold in ("fold0", "fold1"):
        assert {p.name for p in (weights / "tiny" / fold).iterdir()} == {
            "model.pt",
            "config.yaml",
            "metrics.csv",
        }
    for d in datasets:
        meta = json.loads((d.folder / "dataset-metadata.json").read_text())
        check_dataset_metadata(meta, d.role)
        assert meta["id"] == f"me/{d.folder.name}" and meta["licenses"] == [{"name": "other"}]

    # the kernel's params: the experiment's post-processing, inputs by slug, overrides applied
    raw = yaml.safe_load((code / "infer.yaml").read_text())
    params = from_dict(Config, raw)
    assert params.data.dir == "input:child-mind-institute-detect-sleep-states"
    assert params.infer.bundles == [f"input:sleepdetect-weights/tiny/fold{k}" for k in (0, 1)]
    assert params.infer.copy_to == "submission.csv" and params.infer.batch_size == 3
    assert params.postprocess.distance == 99 and params.infer.phase == "test"

    meta = json.loads((kernel / "kernel-metadata.json").read_text())
    assert meta["id"] == "me/sleepdetect-submission" and meta["title"] == "sleepdetect submission"
    assert meta["enable_internet"] is False and meta["enable_gpu"] is False
    assert meta["is_private"] is True and meta["kernel_type"] == "notebook"
    assert meta["dataset_sources"] == ["me/sleepdetect-code", "me/sleepdetect-weights"]
    assert meta["competition_sources"] == ["child-mind-institute-detect-sleep-states"]
    nb = nbformat.read(kernel / meta["code_file"], as_version=4)
    nbformat.validate(nb)
    assert "pip" in nb.cells[1].source and "--no-index" in nb.cells[1].source
    assert "sleepdetect-weights" not in nb.cells[1].source  # only wheels are installed
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    at = tags.index(["parameters"])
    assert tags[at + 1] == ["injected-parameters"]
    assert "input:sleepdetect-code/infer.yaml" in nb.cells[at + 1].source
    assert "pictures = False" in nb.cells[at + 1].source  # the kernel ends at submission.csv
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")

    out = capsys.readouterr().out
    message = f"{git_version(REPO)} tiny"
    kd = tmp_path / "kd"
    assert out.endswith(
        "\nnot uploaded. The first time, run:\n"
        f"kaggle datasets create -p {kd}/sleepdetect-code -r tar\n"
        f"kaggle datasets create -p {kd}/sleepdetect-weights -r tar\n"
        f"kaggle kernels push -p {kd}/sleepdetect-submission\n"
        "and for each later version:\n"
        f"kaggle datasets version -p {kd}/sleepdetect-code -r tar -m '{message}'\n"
        f"kaggle datasets version -p {kd}/sleepdetect-weights -r tar -m '{message}'\n"
        f"kaggle kernels push -p {kd}/sleepdetect-submission\n"
        "\nwhen its run is complete (kaggle kernels status me/sleepdetect-submission), submit it "
        "on the competition page or with:\n"
        "kaggle competitions submit child-mind-institute-detect-sleep-states "
        f"-k me/sleepdetect-submission -v <version> -f submission.csv -m '{message}'\n"
    )


def test_several_experiments_go_into_one_weights_dataset(checkout, trained, tmp_path):
    (trained / "other").mkdir()
    (trained / "tiny" / "fold1").rename(trained / "other" / "fold0")
    datasets, _ = package(packaging_config(trained), ["tiny", "other"], out=tmp_path / "kd")
    params = yaml.safe_load((datasets[0].folder / "infer.yaml").read_text())
    assert params["infer"]["bundles"] == [
        "input:sleepdetect-weights/tiny/fold0",
        "input:sleepdetect-weights/other/fold0",
    ]
    assert (datasets[1].folder / "other" / "fold0" / "model.pt").is_file()


def test_outside_bundles_travel_in_the_weights_dataset(checkout, trained, tmp_path):
    pretrained = trained / "pre" / "fold0"
    shutil.copytree(trained / "tiny" / "fold1", pretrained)
    for fold in ("fold0", "fold1"):
        path = trained / "tiny" / fold / "config.yaml"
        cfg = load_config(path, [f"ensemble.outside=[{pretrained}]"])
        save_config(cfg, path)
    datasets, _ = package(packaging_config(trained), ["tiny"], out=tmp_path / "kd")
    params = yaml.safe_load((datasets[0].folder / "infer.yaml").read_text())
    assert params["ensemble"]["outside"] == ["input:sleepdetect-weights/outside0/fold0"]
    copied = datasets[1].folder / "outside0" / "fold0" / "model.pt"
    assert copied.read_bytes() == (pretrained / "model.pt").read_bytes()
    (pretrained / "model.pt").unlink()
    with pytest.raises(InputError, match=f"{pretrained}: no model.pt"):
        package(packaging_config(trained), ["tiny"], out=tmp_path / "kd")


def test_bad_names_fail_before_anything_is_built(checkout, trained, tmp_path):
    with pytest.raises(ConfigError, match="slug 'Bad_Name'"):
        package(
            packaging_config(trained, "kaggle.code_dataset=Bad_Name"), ["tiny"], out=tmp_path / "kd"
        )
    with pytest.raises(InputError, match="no trained fold"):
        package(packaging_config(trained), ["missing"], out=tmp_path / "kd")
    assert not (tmp_path / "kd").exists()


def test_a_failed_build_keeps_the_previous_one(tmp_path):
    folder = tmp_path / "sleepdetect-code"
    _rebuild(folder, lambda f: (f / "a.whl").write_text("first"))

    def broken(f: Path) -> None:
        (f / "half").write_text("")
        raise RuntimeError("download failed")

    with pytest.raises(RuntimeError):
        _rebuild(folder, broken)
    assert [p.name for p in tmp_path.iterdir()] == ["sleepdetect-code"]
    assert (folder / "a.whl").read_text() == "first"


# ---------------------------------------------------------------- uploading


def test_upload_without_credentials_fails_before_building(checkout, trained, tmp_path):
    with pytest.raises(InputError, match="no Kaggle credentials, so nothing was built"):
        package(packaging_config(trained), ["tiny"], do_upload=True, out=tmp_path / "kd")
    assert not (tmp_path / "kd").exists()
    code = main(
        ["package", "--exp", "tiny", "--upload", f"output.dir={trained}", "kaggle.username=me"]
    )
    assert code == 2


def fake_kaggle_cli(bin_dir: Path, log: Path) -> None:
    """A `kaggle` that logs its arguments; `datasets status` finds what `create` made."""
    bin_dir.mkdir()
    script = bin_dir / "kaggle"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, pathlib\n"
        f"log, made = pathlib.Path({str(log)!r}), pathlib.Path({str(log)!r} + '.made')\n"
        "args = sys.argv[1:]\n"
        "with log.open('a') as f: f.write(' '.join(args) + '\\n')\n"
        "if args[:2] == ['datasets', 'status']:\n"
        "    sys.exit(0 if made.is_file() and args[2] in made.read_text() else 1)\n"
        "if args[:2] == ['datasets', 'create']:\n"
        "    meta = (pathlib.Path(args[3]) / 'dataset-metadata.json').read_text()\n"
        "    import json; made.open('a').write(json.loads(meta)['id'] + '\\n')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_upload_creates_datasets_once_then_adds_versions(checkout, trained, tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    fake_kaggle_cli(tmp_path / "bin", log)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "token")
    kd = tmp_path / "kd"
    package(packaging_config(trained), ["tiny"], do_upload=True, out=kd)
    package(packaging_config(trained), ["tiny"], do_upload=True, out=kd)
    message = f"{git_version(REPO)} tiny"
    assert log.read_text().splitlines() == [
        "datasets status me/sleepdetect-code",
        f"datasets create -p {kd}/sleepdetect-code -r tar",
        "datasets status me/sleepdetect-weights",
        f"datasets create -p {kd}/sleepdetect-weights -r tar",
        f"kernels push -p {kd}/sleepdetect-submission",
        "datasets status me/sleepdetect-code",
        f"datasets version -p {kd}/sleepdetect-code -r tar -m {message}",
        "datasets status me/sleepdetect-weights",
        f"datasets version -p {kd}/sleepdetect-weights -r tar -m {message}",
        f"kernels push -p {kd}/sleepdetect-submission",
    ]


def test_packaging_imports_no_kaggle():
    import subprocess

    code = "import sys, sleepdetect.kaggle; sys.exit('kaggle' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_kernel_params_carry_the_tuned_post_processing():
    from sleepdetect.config import PostprocessConfig
    from sleepdetect.kaggle import kernel_params

    base = load_config(None, ["infer.tuned=true", "postprocess.distance=40"])
    tuned = PostprocessConfig(method="mass", day_norm="sum", distance=240)
    params = kernel_params(base, base.kaggle, "sleepdetect-weights", ["exp/fold0"], tuned)
    # the kernel has no tune/ folder: the chosen setting is written out and tuned is off
    assert params.postprocess == tuned and params.infer.tuned is False
    untouched = kernel_params(base, base.kaggle, "sleepdetect-weights", ["exp/fold0"])
    assert untouched.postprocess.distance == 40


def test_the_install_cell_imports_nothing_of_sleepdetect():
    """The kernel's first cell installs the sleepdetect wheel: it must run before the package
    exists, so it imports only the standard library."""
    import ast
    import sys

    from sleepdetect.kaggle import install_cell

    tree = ast.parse(install_cell(["someone/sleepdetect-code", "someone/sleepdetect-wheels"]))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported and imported <= set(sys.stdlib_module_names), imported
