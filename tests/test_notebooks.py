"""Notebooks: pairs in sync, one literal `parameters` cell, no outputs, and they run."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import jupytext
import nbformat
import polars as pl
import pytest

from sleepdetect.data.synthetic import write_synthetic
from sleepdetect.experiment import Experiment
from tiny_run import TINY_DEMO

REPO = Path(__file__).resolve().parents[1]
PAIRS = sorted((REPO / "notebooks").glob("*.py"))


def test_there_are_notebooks():
    assert [p.stem for p in PAIRS][:1] == ["01_prepare"]


@pytest.mark.parametrize("py", PAIRS, ids=lambda p: p.stem)
def test_pair_in_sync(py):
    ipynb = py.with_suffix(".ipynb")
    assert ipynb.is_file(), f"{ipynb.name} is missing: run `make notebooks`"
    a, b = jupytext.read(py), nbformat.read(ipynb, as_version=4)
    sources = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert sources(a) == sources(b), f"{py.name} and {ipynb.name} differ: run `make notebooks`"
    assert all(not c.get("outputs") for c in b.cells if c.cell_type == "code"), (
        f"{ipynb.name} is committed with outputs; clear them"
    )


@pytest.mark.parametrize("py", PAIRS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_literals(py):
    nb = jupytext.read(py)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{py.name} needs exactly one cell tagged 'parameters'"
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign), f"{py.name}: parameters cell holds only assignments"
        ast.literal_eval(node.value)  # raises for anything but a literal


def test_prepare_notebook_runs_through_papermill(tmp_path, monkeypatch):
    from sleepdetect.pipeline import run

    monkeypatch.chdir(REPO)
    overrides = [
        f"data.dir={tmp_path / 'data'}",
        f"output.dir={tmp_path / 'out'}",
        "data.synthetic.series=2",
        "data.synthetic.days=1.5",
    ]
    assert run(REPO / "params" / "demo.yaml", overrides, stages=["prepare"]) == 0
    executed = tmp_path / "out" / "demo" / "01_prepare.ipynb"
    nb = nbformat.read(executed, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert (Experiment(tmp_path / "out" / "demo").prepared("train") / "manifest.json").is_file()
    assert list((Experiment(tmp_path / "out" / "demo").prepared("train")).glob("*.png"))
    assert not list((REPO / "notebooks").glob("*.png"))  # nothing written into the sources


def test_failed_stage_names_notebook_and_cell(tmp_path, monkeypatch, capsys):
    from sleepdetect.pipeline import run

    monkeypatch.chdir(REPO)
    bad = tmp_path / "data"
    bad.mkdir()
    (bad / "train_series.parquet").write_text("not parquet")
    (bad / "train_events.csv").write_text("series_id,night,event,step,timestamp\n")
    overrides = [f"data.dir={bad}", f"output.dir={tmp_path / 'out'}"]
    assert run(REPO / "params" / "demo.yaml", overrides, stages=["prepare"]) == 1
    out = capsys.readouterr().out
    assert "stage 'prepare' failed in notebooks/01_prepare.ipynb, cell" in out
    assert "not a parquet file" in out


def test_whole_pipeline_runs_through_papermill(tmp_path, monkeypatch, capsys):
    from sleepdetect.pipeline import run

    monkeypatch.chdir(REPO)
    overrides = [f"data.dir={tmp_path / 'data'}", f"output.dir={tmp_path / 'out'}", *TINY_DEMO]
    assert run(REPO / "params" / "demo.yaml", overrides) == 0
    exp = tmp_path / "out" / "demo"
    for name in ("01_prepare", "02_train", "03_infer"):
        assert (exp / f"{name}.ipynb").is_file()
    assert (Experiment(exp).fold(0) / "model.pt").is_file()
    submission = Experiment(exp).submission("test")
    assert submission.read_text().startswith("row_id,series_id,step,event,score")
    out = capsys.readouterr().out
    assert "score fold0: " in out and f"submission: {submission}" in out
    stamp, stamp_bytes = submission.stat().st_mtime_ns, submission.read_bytes()

    # the same command again: every stage is complete with these params
    assert run(REPO / "params" / "demo.yaml", overrides) == 0
    out = capsys.readouterr().out
    assert out.count("complete with these params: skipped") == 3
    assert submission.stat().st_mtime_ns == stamp
    # a post-processing change reruns train (its validation uses it) and infer, not prepare
    assert run(REPO / "params" / "demo.yaml", [*overrides, "postprocess.distance=60"]) == 0
    out = capsys.readouterr().out
    assert "[prepare] complete with these params: skipped" in out
    assert "[train] notebooks/02_train.ipynb" in out and "[infer] notebooks/03_infer.ipynb" in out

    # two runs of one command give the same submission, byte for byte
    twin = [*overrides, f"output.dir={tmp_path / 'twin'}"]
    assert run(REPO / "params" / "demo.yaml", twin) == 0
    rerun = Experiment(tmp_path / "twin" / "demo").submission("test")
    assert rerun.read_bytes() == stamp_bytes

    # another data folder (issue 13's case): its own series, never the arrays prepared before
    def series_of(data_dir):
        return set(pl.read_parquet(data_dir / "test_series.parquet")["series_id"])

    other, third = tmp_path / "other", tmp_path / "third"
    write_synthetic(other, n_series=2, days=2.0, seed=5)
    write_synthetic(third, n_series=2, days=2.0, seed=6)
    moved = [*overrides, f"data.dir={other}"]
    assert run(REPO / "params" / "demo.yaml", moved, stages=["prepare", "infer"]) == 0
    assert set(pl.read_csv(submission)["series_id"]) <= series_of(other)
    # the test file replaced under the same path: infer runs again, on the new file
    shutil.copy(third / "test_series.parquet", other / "test_series.parquet")
    assert run(REPO / "params" / "demo.yaml", moved, stages=["infer"]) == 0
    assert "[infer] notebooks/03_infer.ipynb" in capsys.readouterr().out
    assert set(pl.read_csv(submission)["series_id"]) <= series_of(third)


def test_run_command_reads_overrides_after_options(monkeypatch, capsys):
    from sleepdetect.cli import main

    monkeypatch.chdir(REPO)
    assert main(["run", "params/demo.yaml", "--only", "prepare", "nokey.x=1"]) == 2
    assert "unknown key 'nokey'" in capsys.readouterr().err
    assert main(["run", "params/demo.yaml", "--only", "nostage"]) == 2
    assert "unknown stage 'nostage'" in capsys.readouterr().err


def test_sweep_expands_comma_lists_but_not_lists():
    from sleepdetect.pipeline import expand_sweep

    combos = expand_sweep(["optimizer.lr=1e-4,5e-4", "prepare.features=[anglez, enmo]", "seed=1,2"])
    assert combos == [
        ["optimizer.lr=1e-4", "prepare.features=[anglez, enmo]", "seed=1"],
        ["optimizer.lr=1e-4", "prepare.features=[anglez, enmo]", "seed=2"],
        ["optimizer.lr=5e-4", "prepare.features=[anglez, enmo]", "seed=1"],
        ["optimizer.lr=5e-4", "prepare.features=[anglez, enmo]", "seed=2"],
    ]


def test_sweep_runs_each_combination_as_its_own_experiment(tmp_path, monkeypatch, capsys):
    from sleepdetect.pipeline import run

    monkeypatch.chdir(REPO)
    overrides = [
        f"data.dir={tmp_path / 'data'}",
        f"output.dir={tmp_path / 'out'}",
        "data.synthetic.series=2",
        "data.synthetic.days=1.5",
        "prepare.features=[anglez, enmo]",  # a list: not a sweep
        "exp_name=sw",
        "seed=1,2",
    ]
    assert run(REPO / "params" / "demo.yaml", overrides, stages=["prepare"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sw-seed=1", "sw-seed=2"]
    out = capsys.readouterr().out
    assert "sweep of 2 experiments" in out and "sw-seed=2" in out.splitlines()[-1]


def _pictures(nb: nbformat.NotebookNode) -> int:
    """How many outputs of `nb`'s code cells are PNG pictures."""
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def test_executed_notebooks_show_their_pictures(tmp_path, monkeypatch, capfd):
    """Each notebook ends with its key pictures inline; 03_infer on a labelled phase also
    pictures one series' scores and writes the sleep report with its actogram."""
    from sleepdetect.pipeline import run

    monkeypatch.chdir(REPO)
    overrides = [
        f"data.dir={tmp_path / 'data'}",
        f"output.dir={tmp_path / 'out'}",
        *TINY_DEMO,
        "infer.phase=train",  # labels: the truth is drawn, the report has labelled nights
    ]
    assert run(REPO / "params" / "demo.yaml", overrides) == 0
    exp = tmp_path / "out" / "demo"
    counts = {
        name: _pictures(nbformat.read(exp / f"{name}.ipynb", as_version=4))
        for name in ("01_prepare", "02_train", "03_infer")
    }
    assert counts["01_prepare"] >= 1 and counts["02_train"] >= 2 and counts["03_infer"] >= 2, counts
    infer_dir = Experiment(exp).infer("train")
    manifest = Experiment(exp).prepared("train") / "manifest.json"
    first = json.loads(manifest.read_text())["series"][0]
    assert (infer_dir / f"scores-{first['series_id']}.png").is_file()
    assert (infer_dir / f"actogram-{first['series_id']}.png").is_file()
    report = pl.read_csv(infer_dir / "report.csv")
    assert report["series_id"].n_unique() == len(list((exp / "prepared/train/features").iterdir()))

    # progress as text in a run, whether or not ipywidgets is installed: a widget would be an
    # empty box in the executed notebook and nothing in the run's log
    outputs = [
        o
        for name in ("01_prepare", "02_train", "03_infer")
        for c in nbformat.read(exp / f"{name}.ipynb", as_version=4).cells
        for o in c.get("outputs", [])
    ]
    assert not [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "epoch 1/1" in text and "infer train" in text
    assert "GPU available" in text and "litlogger" not in text  # Lightning's notes, no advert
    assert "without encryption" not in capfd.readouterr().err  # the kernel's own stderr
