"""Faults: two writers on one experiment folder, a killed writer, a full disk mid-write."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from sleepdetect.core import files, locks
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import (
    DiskFullError,
    atomic_path,
    is_disk_full,
    save_npy,
    write_json,
    write_text,
)
from sleepdetect.core.locks import LOCK_NAME, experiment_lock

REPO = Path(__file__).resolve().parents[1]
HOLD = textwrap.dedent(
    """
    import sys, time
    from sleepdetect.core.locks import experiment_lock
    with experiment_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
    """
)


def start_holder(folder: Path) -> subprocess.Popen:
    """Another process holding the lock of `folder` (returns once it holds it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    assert line.strip() == "held", f"the holder did not start (exit {proc.poll()})"
    return proc


@pytest.fixture
def holder(tmp_path):
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        procs.append(start_holder(folder))
        return procs[-1]

    yield start
    for p in procs:
        p.kill()
        p.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- the experiment lock


def test_second_process_is_refused_naming_the_holder(tmp_path, holder):
    exp = tmp_path / "outputs" / "exp"
    proc = holder(exp)
    with pytest.raises(InputError) as e, experiment_lock(exp):
        pass
    msg = str(e.value)
    assert f"{exp.resolve()} is being written by process {proc.pid} (" in msg
    assert "experiment_lock" in msg  # its command line
    assert "started 20" in msg and msg.endswith("wait for it or stop it")
    assert locks.holder(exp)["pid"] == proc.pid  # the refusal left the holder's record


def test_killed_holder_lock_is_taken_over(tmp_path, holder, capsys):
    exp = tmp_path / "exp"
    proc = holder(exp)
    proc.kill()  # SIGKILL: no cleanup, the .lock file stays with its record
    proc.wait()
    assert json.loads((exp / LOCK_NAME).read_text())["pid"] == proc.pid
    with experiment_lock(exp) as path:
        assert locks.holder(exp)["pid"] == os.getpid()
        assert path == exp.resolve() / LOCK_NAME
    err = capsys.readouterr().err
    assert f"took over the stale lock .lock of process {proc.pid} (" in err
    assert "no longer exists" in err
    assert not (exp / LOCK_NAME).exists()  # released: removed


def test_stale_file_of_a_dead_pid_is_taken_over(tmp_path, capsys):
    record = {"pid": dead_pid(), "host": locks.socket.gethostname(), "command": "x run"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    with experiment_lock(tmp_path):
        pass
    err = capsys.readouterr().err
    assert f"stale lock .lock of process {record['pid']} (x run" in err
    assert "no longer exists" in err


def test_lock_is_reentrant_in_one_process_and_released(tmp_path, holder):
    with experiment_lock(tmp_path / "a"):
        with experiment_lock(tmp_path / "a"), experiment_lock(tmp_path / "b"):
            assert (tmp_path / "a" / LOCK_NAME).is_file()
        assert (tmp_path / "a" / LOCK_NAME).is_file()  # still held by the outer block
        assert not (tmp_path / "b").exists()  # made for the lock, empty: removed
        (tmp_path / "a" / "kept").write_text("")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["kept"]  # .lock removed
    proc = holder(tmp_path / "a")  # another process can take it now
    assert locks.holder(tmp_path / "a")["pid"] == proc.pid


def test_a_forked_child_neither_owns_nor_releases_the_lock(tmp_path):
    with experiment_lock(tmp_path):
        pid = os.fork()
        if pid == 0:  # the child: taking it is refused, leaving the block releases nothing
            try:
                with experiment_lock(tmp_path):
                    os._exit(3)
            except InputError:
                pass
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
        assert locks.holder(tmp_path)["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_released_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), experiment_lock(tmp_path):
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_NAME).exists()
    with experiment_lock(tmp_path):
        pass


def test_run_refuses_an_experiment_another_process_writes(tmp_path, holder, monkeypatch):
    from sleepdetect import pipeline

    monkeypatch.chdir(REPO)
    overrides = [f"output.dir={tmp_path}", "exp_name=busy"]
    proc = holder(tmp_path / "busy")
    with pytest.raises(InputError, match=f"being written by process {proc.pid} "):
        pipeline.run_experiment(REPO / "params" / "demo.yaml", overrides, stages=["prepare"])
    assert not (tmp_path / "busy" / "config.yaml").exists()  # refused before writing anything


def test_package_refuses_while_its_output_or_experiment_is_written(tmp_path, holder, monkeypatch):
    from sleepdetect import kaggle
    from sleepdetect.config import load_config

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(kaggle, "_package", lambda *a: pytest.fail("built while locked"))
    cfg = load_config(None, [f"output.dir={tmp_path / 'outputs'}"])
    proc = holder(tmp_path / "kd")
    with pytest.raises(InputError, match=f"kd is being written by process {proc.pid} "):
        kaggle.package(cfg, ["exp"], out=tmp_path / "kd")
    proc = holder(tmp_path / "outputs" / "exp")
    with pytest.raises(InputError, match=f"exp is being written by process {proc.pid} "):
        kaggle.package(cfg, ["exp"], out=tmp_path / "kd2")
    assert not (tmp_path / "kd2" / LOCK_NAME).exists()  # the lock it did take was released


# ---------------------------------------------------------------- a full disk


def full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def assert_intact(path: Path, before: str) -> None:
    assert path.read_text() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary left


def half_then_full(self, data, *args, **kwargs):
    with open(self, "w") as f:
        f.write(data[: len(data) // 2])
    full()


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_write_text_disk_full_keeps_the_previous_file(tmp_path, monkeypatch, err):
    path = tmp_path / "notes.txt"
    path.write_text("previous\n")

    def fail(self, data, *args, **kwargs):
        with open(self, "w") as f:
            f.write(data[:3])
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(Path, "write_text", fail)
    with pytest.raises(DiskFullError) as e:
        write_text(path, "new contents\n")
    monkeypatch.undo()
    assert isinstance(e.value, InputError)
    assert str(e.value).startswith(f"{path}: no space left on the device")
    assert "the previous notes.txt is intact" in str(e.value)
    assert "df -h" in str(e.value)
    assert_intact(path, "previous\n")


def test_write_json_disk_full_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "manifest.json"
    write_json(path, {"a": 1})
    before = path.read_text()
    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(InputError, match="manifest.json is intact"):
        write_json(path, {"a": 2, "b": list(range(100))})
    monkeypatch.undo()
    assert_intact(path, before)


def test_first_write_disk_full_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "new.json"
    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(InputError, match="nothing was written to new.json"):
        write_json(path, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_save_npy_disk_full(tmp_path, monkeypatch):
    path = tmp_path / "x.npy"
    save_npy(path, np.arange(3))
    monkeypatch.setattr(np, "save", full)
    with pytest.raises(InputError, match="x.npy is intact"):
        save_npy(path, np.arange(5))
    monkeypatch.undo()
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


def test_replace_disk_full_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("old: 1\n")
    monkeypatch.setattr(files.os, "replace", full)
    with pytest.raises(InputError, match="config.yaml is intact"):
        write_text(path, "new: 2\n")
    monkeypatch.undo()
    assert_intact(path, "old: 1\n")


def test_atomic_path_user_disk_full_and_wrapped_errors(tmp_path):
    """A writer of its own inside atomic_path (parquet, csv, ...); a library that wraps the
    OS error in its own exception (polars: ComputeError '... (os error 28)')."""
    import polars as pl

    path = tmp_path / "oof.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(path)
    for failure in (
        OSError(errno.ENOSPC, "No space left on device"),
        pl.exceptions.ComputeError("parquet: underlying IO error: No space left on device"),
        RuntimeError("write failed: os error 28"),
    ):
        with pytest.raises(InputError, match="oof.parquet is intact") as e:
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"partial")
                raise failure
        assert e.value.__cause__ is failure
        assert pl.read_parquet(path)["a"].to_list() == [1]
        assert [p.name for p in tmp_path.iterdir()] == ["oof.parquet"]


def test_nested_atomic_paths_name_the_inner_file(tmp_path):
    outer, inner = tmp_path / "a.csv", tmp_path / "b.csv"
    with pytest.raises(DiskFullError, match=r"b\.csv: no space") as e:
        with atomic_path(outer) as t1, atomic_path(inner) as t2:
            t1.write_text("x")
            t2.write_text("y")
            full()
    assert "a.csv" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_other_errors_pass_unchanged(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("keep")
    with pytest.raises(PermissionError), atomic_path(path) as tmp:
        tmp.write_text("new")
        raise PermissionError(errno.EACCES, "Permission denied")
    assert_intact(path, "keep")


def _is_full_device() -> bool:
    import stat

    try:
        return stat.S_ISCHR(os.stat("/dev/full").st_mode)
    except OSError:
        return False


@pytest.mark.skipif(not _is_full_device(), reason="needs the /dev/full device")
@pytest.mark.parametrize("writer", ["polars-parquet", "polars-csv", "numpy", "torch"])
def test_real_library_errors_on_a_full_device_are_recognised(writer):
    """/dev/full fails every write with ENOSPC, as each library reports it. Only an open file
    is passed: given the path, a library may remove it on failure (pyarrow does), which as
    root would delete the device."""
    import polars as pl

    df = pl.DataFrame({"a": np.arange(100_000)})
    with pytest.raises(Exception) as e, open("/dev/full", "wb") as f:  # noqa: PT011
        if writer == "polars-parquet":
            df.write_parquet(f)
        elif writer == "polars-csv":
            df.write_csv(f)
        elif writer == "numpy":
            np.save(f, np.zeros(100_000))
        else:
            import torch

            torch.save({"x": torch.zeros(100_000)}, f)  # to a path, it hides the errno
    assert is_disk_full(e.value)


def test_run_disk_full_in_papermill_is_one_clear_error(tmp_path, monkeypatch):
    import papermill

    from sleepdetect import pipeline

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(papermill, "execute_notebook", full)
    overrides = [f"output.dir={tmp_path}", "exp_name=full"]
    with pytest.raises(InputError, match=r"01_prepare\.ipynb: no space left") as e:
        pipeline.run_experiment(REPO / "params" / "demo.yaml", overrides, stages=["prepare"])
    assert "stage 'prepare' stopped" in str(e.value)
    assert (tmp_path / "full" / "config.yaml").is_file()
    assert not (tmp_path / "full" / LOCK_NAME).exists()  # released


def test_package_disk_full_is_one_clear_error(tmp_path, monkeypatch):
    from sleepdetect import kaggle
    from sleepdetect.config import load_config

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(kaggle, "_package", full)
    cfg = load_config(None, [f"output.dir={tmp_path / 'outputs'}"])
    with pytest.raises(InputError, match="no space left .* while building it"):
        kaggle.package(cfg, ["exp"], out=tmp_path / "kd")
    assert not (tmp_path / "kd" / LOCK_NAME).exists()
