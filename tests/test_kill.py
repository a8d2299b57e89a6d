"""Faults survived: a command killed (SIGKILL) at chosen points of prepare, train, tune, infer and
package completes when the same command runs again, and what it leaves equals an uninterrupted
run's: the submission byte for byte, every fold's weights tensor for tensor, the Kaggle folders
file for file; no temporary file, half-built folder or `.lock` stays behind.

The kills are placed, not timed. A `sitecustomize` module written into a temporary folder on
PYTHONPATH (so the CLI, papermill's kernels and any Python they start load it) wraps `os.replace`
and `os.rename`, through which every atomic write (files.atomic_path), folder swap (prepare,
package) and Lightning checkpoint (fsspec's commit, a rename) passes, and sends SIGKILL on the
N-th call whose destination matches a pattern, counted across all those processes in a file,
before or after the call. `scope="caller"` kills the process making the call: in a notebook, its
kernel (papermill then fails on the dead kernel and the CLI exits 1, releasing its lock); in the
CLI, the CLI. `scope="run"` kills the CLI first, then the caller: a `kill -9` of the whole run,
which leaves the CLI's `.lock` for the next run to take over.

The slow tests compare with one uninterrupted `run` made once for the module (and a `package`
of it made in each package test). A
prepare test starts from an empty output folder; a train or infer test from the folder the
uninterrupted run had when that stage began (the reference's outputs of the stages before,
copied) and runs the whole `run` command, which skips those stages as any rerun does; a package
test packages the reference experiment. The cheap tests: `python -m sleepdetect prepare`
(no notebook) killed, and 02_train stopped in-process after a checkpoint and resumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from sleepdetect.experiment import Experiment
from tiny_run import KILL_DEMO

REPO = Path(__file__).resolve().parents[1]
KILL_ENV = "SLEEPDETECT_TEST_KILL"
HOOK = '''\
"""tests/test_kill.py: SIGKILL on the N-th os.replace/os.rename to a path matching a pattern."""
import fnmatch
import json
import os
import signal

_spec = json.loads(os.environ.get("SLEEPDETECT_TEST_KILL") or "null")
if _spec:
    os.environ.setdefault("SLEEPDETECT_TEST_KILL_ROOT", str(os.getpid()))  # the command's pid

    def _kill(target, n):
        with open(_spec["fired"], "w") as f:
            json.dump({"pid": os.getpid(), "target": target, "n": n}, f)
        root = int(os.environ["SLEEPDETECT_TEST_KILL_ROOT"])
        if _spec["scope"] == "run" and root != os.getpid():
            os.kill(root, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    def _wrap(real):
        def wrapper(src, dst, *args, **kwargs):
            target = os.fsdecode(dst)
            if not fnmatch.fnmatch(target, _spec["match"]):
                return real(src, dst, *args, **kwargs)
            with open(_spec["counter"], "ab") as f:  # one byte per matching call, any process
                f.write(b".")
                n = f.tell()
            if n == _spec["nth"] and _spec["when"] == "before":
                _kill(target, n)
            out = real(src, dst, *args, **kwargs)
            if n == _spec["nth"]:
                _kill(target, n)
            return out

        return wrapper

    setattr(os, _spec["op"], _wrap(getattr(os, _spec["op"])))
'''
# what a killed write or build may leave: atomic_path's temporary file, prepare's and package's
# folders built aside or set aside, the experiment lock
VERSION = re.compile(r"at [^;\s]+; experiments:")  # the commit the kernel's header names
LEFTOVER = re.compile(r"^\..+\.\d+\.tmp$|\.partial$|\.building$|\.old$|^\.lock$")


@dataclass(frozen=True)
class Kill:
    op: str  # which call is counted: replace (atomic writes) or rename (folders, checkpoints)
    match: str  # fnmatch pattern of the destination path
    nth: int = 1  # the matching call that kills
    when: str = "before"  # before or after that call
    scope: str = "caller"  # caller: the process making the call; run: the CLI too


@dataclass
class World:
    """The paths the tests share: the hook, the data, the uninterrupted reference run."""

    hook: Path
    home: Path
    data: Path
    ref_out: Path

    @property
    def ref_exp(self) -> Path:
        return self.ref_out / "demo"


def environment(world_hook: Path, home: Path, kill: Kill | None, at: Path | None) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith((KILL_ENV, "KAGGLE_", "SLEEPDETECT_INPUT_"))
    }
    env |= {
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(world_hook), *filter(None, [env.get("PYTHONPATH")])]),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "TMPDIR": str(home / "tmp"),  # fsspec writes a checkpoint there before renaming it
    }
    if kill is not None:
        spec = asdict(kill) | {"counter": str(at / "kill.count"), "fired": str(at / "kill.json")}
        env[KILL_ENV] = json.dumps(spec)
    return env


@dataclass
class Done:
    pid: int
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"exit {self.returncode}\n--- stdout\n{self.stdout[-4000:]}\n"
            f"--- stderr\n{self.stderr[-4000:]}"
        )


def execute(world: World, cmd: list[str], kill: Kill | None = None, at: Path | None = None) -> Done:
    """Run `cmd` in its own session from the checkout, with `kill` armed (counted under `at`)."""
    if at is not None:
        for name in ("kill.count", "kill.json"):
            (at / name).unlink(missing_ok=True)
    env = environment(world.hook, world.home, kill, at)
    with subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    return Done(proc.pid, proc.returncode, out, err)


def run_cmd(world: World, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sleepdetect",
        "run",
        "params/demo.yaml",
        *KILL_DEMO,
        f"data.dir={world.data}",
        f"output.dir={out}",
    ]


PACKAGE = (
    "import sys\n"
    "from sleepdetect.config import load_config\n"
    "from sleepdetect.kaggle import package\n"
    "package(load_config('params/kaggle.yaml', sys.argv[3:]), [sys.argv[2]], out=sys.argv[1])\n"
)


def package_cmd(out: Path, kd: Path) -> list[str]:
    """`python -m sleepdetect package --exp demo` building into `kd`, not the checkout's."""
    overrides = [f"output.dir={out}", "kaggle.username=me", "kaggle.wheels=[]"]
    return [sys.executable, "-c", PACKAGE, str(kd), "demo", *overrides]


def killed(world: World, cmd: list[str], kill: Kill, at: Path) -> bool:
    """Run `cmd` with `kill` armed; check the kill happened where it was aimed. Returns whether
    the command's own process was killed (and so left its lock behind)."""
    done = execute(world, cmd, kill, at)
    fired = at / "kill.json"
    assert fired.is_file(), f"the kill point {kill} was never reached\n{done}"
    own = kill.scope == "run" or json.loads(fired.read_text())["pid"] == done.pid
    if own:
        assert done.returncode == -signal.SIGKILL, done
    else:  # a kernel died under papermill: the CLI fails and says so
        assert done.returncode == 1, done
        assert "DeadKernelError" in done.stderr or "Kernel died" in done.stderr, done
    return own


def completes(world: World, cmd: list[str], stale_lock: bool = False) -> Done:
    done = execute(world, cmd)
    assert done.returncode == 0, done
    if stale_lock:  # the killed command's lock, left behind, was taken over
        assert "took over the stale lock .lock of process" in done.stderr, done
    return done


def leftovers(*folders: Path) -> list[str]:
    return sorted(str(p) for f in folders for p in f.rglob("*") if LEFTOVER.search(p.name))


def assert_same_weights(exp: Path, ref_exp: Path) -> None:
    import torch

    folds = [p.name for p in Experiment(ref_exp).folds()]
    assert [p.name for p in Experiment(exp).folds()] == folds
    for fold in folds:
        got = torch.load(exp / fold / "model.pt", weights_only=True)
        want = torch.load(ref_exp / fold / "model.pt", weights_only=True)
        assert list(got) == list(want)
        different = [k for k in want if not torch.equal(got[k], want[k])]
        assert not different, f"{fold}: {different} differ from the uninterrupted run's"


def assert_same_submission(exp: Path, ref_exp: Path) -> None:
    sub = "infer/test/submission.csv"
    assert (exp / sub).read_bytes() == (ref_exp / sub).read_bytes()
    assert (Experiment(exp).infer("test") / "submission.json").is_file()


def tree(folder: Path) -> dict[str, object]:
    """Every file of a package build by content: a wheel by its members (zip dates vary), a
    model.pt by its tensors (torch names the archive after the temporary file), a notebook but
    its cells' ids (two uninterrupted builds differ there too) and the commit its header names
    (a commit between the two builds changes nothing else)."""
    import torch

    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_dir():
            out[rel] = "dir"
        elif p.suffix == ".whl":
            with zipfile.ZipFile(p) as z:
                out[rel] = {n: z.read(n) for n in sorted(z.namelist())}
        elif p.suffix == ".ipynb":  # nbformat gives the cells package adds random ids
            nb = json.loads(VERSION.sub("at <commit>; experiments:", p.read_text()))
            out[rel] = [{k: v for k, v in c.items() if k != "id"} for c in nb.pop("cells")], nb
        elif p.name == "model.pt":
            out[rel] = {k: v.tolist() for k, v in torch.load(p, weights_only=True).items()}
        else:
            out[rel] = p.read_bytes()
    return out


# ---------------------------------------------------------------- the reference run


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    """Hook, data and an uninterrupted run, made once for the module."""
    base = tmp_path_factory.mktemp("kill")
    hook = base / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    (base / "home" / "tmp").mkdir(parents=True)
    w = World(hook, base / "home", base / "data", base / "ref")
    completes(w, run_cmd(w, w.ref_out))
    assert Experiment(w.ref_exp).tuned.is_file()
    assert [p.name for p in Experiment(w.ref_exp).folds()] == ["fold0", "fold1"]
    return w


# The files of an experiment folder each stage writes (the rest: the stages before it).
_AFTER_PREPARE = ("prepared/train", ".stages/prepare.json", "config.yaml", "01_prepare.ipynb")
_INFER_ONLY = ("infer", "prepared/test", ".stages/infer.json", "03_infer.ipynb")


def start_at(world: World, out: Path, stage: str) -> Path:
    """`out/demo` as the uninterrupted run left it when `stage` began."""
    exp = out / "demo"
    if stage == "train":
        for rel in _AFTER_PREPARE:
            src, dst = world.ref_exp / rel, exp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    else:
        assert stage == "infer"
        skip = {str(world.ref_exp / rel) for rel in _INFER_ONLY}

        def ignore(folder: str, names: list[str]) -> list[str]:
            return [n for n in names if os.path.join(folder, n) in skip]

        shutil.copytree(world.ref_exp, exp, ignore=ignore)
    return exp


def survive(world: World, cmd: list[str], kills: list[Kill], at: Path, locked: bool = True) -> Done:
    """Kill `cmd` at each of `kills` in turn, then run it to the end; nothing is left over under
    `at`. `locked`: the command holds a lock (run, package), which a kill of it leaves behind."""
    stale = False
    for kill in kills:  # a later command takes over the lock an earlier one left
        stale = killed(world, cmd, kill, at) and locked
    done = completes(world, cmd, stale_lock=stale)
    assert not leftovers(at), leftovers(at)
    return done


# ---------------------------------------------------------------- prepare


def _series(at: Path) -> Path:
    from sleepdetect.data.synthetic import write_synthetic

    data = at / "data"
    write_synthetic(data, n_series=3, days=1.0, seed=3)
    return data


def _prepare_cmd(data: Path, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "sleepdetect", "prepare", f"data.dir={data}"]
    return [*cmd, f"output.dir={out}", "prepare.features=[anglez, enmo, hour_sin, anglez_diff]"]


def _prepared(out: Path) -> dict[str, bytes]:
    """The prepared folder's files by content; its config.yaml names `out`, so only its keys."""
    root = Experiment(out / "demo").prepared("train")
    found = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.*"))}
    found["config.yaml"] = found["config.yaml"].replace(str(out).encode(), b"<out>")
    return found


@pytest.mark.parametrize(
    "kills,over",
    [
        pytest.param(
            [Kill("replace", "*/.train.partial/features/*.npy", when="after")], False, id="npy"
        ),
        # preparing again over a complete result: before the swap sets it aside, and between
        # the swap's two renames (the old folder aside, the new one not yet in)
        pytest.param([Kill("rename", "*/prepared/.train.old")], True, id="swap-aside"),
        pytest.param(
            [Kill("rename", "*/prepared/.train.old", when="after")], True, id="swap-between"
        ),
    ],
)
def test_killed_prepare_command_completes_the_same(tmp_path, kills, over):
    """`python -m sleepdetect prepare` (no notebook: cheap) killed after the first series'
    array, or, preparing again over a complete result, before and within its swap-in; run
    again, it builds what an uninterrupted prepare builds."""
    data = _series(tmp_path)
    w = World(tmp_path / "hook", tmp_path / "home", data, tmp_path / "ref")
    w.hook.mkdir()
    (w.hook / "sitecustomize.py").write_text(HOOK)
    (w.home / "tmp").mkdir(parents=True)
    completes(w, _prepare_cmd(data, w.ref_out))
    out = tmp_path / "out"
    if over:
        shutil.copytree(w.ref_out, out)
    survive(w, _prepare_cmd(data, out), kills, tmp_path, locked=False)
    assert _prepared(out) == _prepared(w.ref_out)
    prepared = Experiment(out / "demo").prepared("train").parent
    assert sorted(p.name for p in prepared.iterdir()) == ["train"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill",
    [
        pytest.param(Kill("replace", "*/.train.partial/features/*.npy", when="after"), id="npy"),
        pytest.param(Kill("rename", "*/prepared/train", scope="run"), id="swap-in"),
        pytest.param(Kill("replace", "*/.stages/prepare.json"), id="marker"),  # the CLI's
    ],
)
def test_killed_in_prepare(world, tmp_path, kill):
    """01_prepare killed in its kernel (after the first series' array; before the prepared
    folder's swap-in, the CLI with it) or the CLI before it records prepare as done."""
    out = tmp_path / "out"
    survive(world, run_cmd(world, out), [kill], tmp_path)
    assert_same_weights(out / "demo", world.ref_exp)
    assert_same_submission(out / "demo", world.ref_exp)


# ---------------------------------------------------------------- train and tune

_CKPT = "*/fold0/checkpoints/last.ckpt"  # saved after each of the 4 steps of fold 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "kills",
    [
        pytest.param([Kill("replace", "*/fold0/inputs.json", when="after")], id="no-checkpoint"),
        pytest.param([Kill("rename", _CKPT, nth=1, when="after")], id="mid-epoch"),
        pytest.param([Kill("rename", _CKPT, nth=2, when="after", scope="run")], id="epoch-end"),
        # resumed at the end of epoch 0, killed again mid-epoch 1, resumed there
        pytest.param(
            [Kill("rename", _CKPT, nth=2, when="after"), Kill("rename", _CKPT, when="after")],
            id="after-a-resume",
        ),
        pytest.param([Kill("replace", "*/fold0/model.pt", when="after")], id="between-folds"),
        pytest.param([Kill("replace", "*/fold1/model.pt")], id="before-model"),
        pytest.param([Kill("replace", "*/demo/oof.parquet", scope="run")], id="before-gather"),
        pytest.param([Kill("replace", "*/tune/postprocess.yaml")], id="tune"),
        pytest.param([Kill("replace", "*/.stages/train.json")], id="marker"),  # the CLI's
    ],
)
def test_killed_in_train(world, tmp_path, kills):
    """02_train (and the tune at its end) killed; run again, it resumes and ends with the
    uninterrupted run's weights and submission."""
    out = tmp_path / "out"
    start_at(world, out, "train")
    survive(world, run_cmd(world, out), kills, tmp_path)
    assert_same_weights(out / "demo", world.ref_exp)
    assert_same_submission(out / "demo", world.ref_exp)


# ---------------------------------------------------------------- infer


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill",
    [
        pytest.param(Kill("rename", "*/prepared/test"), id="test-swap-in"),
        pytest.param(Kill("replace", "*/submission.csv", scope="run"), id="before-submission"),
        pytest.param(Kill("replace", "*/submission.csv", when="after"), id="before-record"),
        pytest.param(Kill("replace", "*/.stages/infer.json"), id="marker"),  # the CLI's
    ],
)
def test_killed_in_infer(world, tmp_path, kill):
    """03_infer killed preparing the test series, before submission.csv, between it and
    submission.json, or the CLI before it records infer as done."""
    out = tmp_path / "out"
    start_at(world, out, "infer")
    done = survive(world, run_cmd(world, out), [kill], tmp_path)
    assert done.stdout.count("complete with these params: skipped") == 2  # prepare, train
    assert_same_weights(out / "demo", world.ref_exp)
    assert_same_submission(out / "demo", world.ref_exp)


# ---------------------------------------------------------------- package


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill,again",
    [
        pytest.param(
            Kill("replace", "*/.sleepdetect-weights.building/dataset-metadata.json"),
            False,
            id="weights-dataset",
        ),
        pytest.param(Kill("rename", "*/sleepdetect-code", when="after"), False, id="between"),
        pytest.param(Kill("rename", "*/sleepdetect-submission"), True, id="kernel-swap"),
    ],
)
def test_killed_in_package(world, tmp_path, kill, again):
    """`package` killed building the weights dataset, between two datasets' swaps, or (over
    a complete earlier build) before the kernel folder's swap, its old folder removed; run
    again, it builds what an uninterrupted package builds."""
    ref_kd, kd = tmp_path / "ref-kd", tmp_path / "kd"
    # built here, not with the reference run: the wheel and the kernel's header are of the
    # checkout as it is now (its commit, README and sources)
    completes(world, package_cmd(world.ref_out, ref_kd))
    if again:
        shutil.copytree(ref_kd, kd)
    survive(world, package_cmd(world.ref_out, kd), [kill], tmp_path)
    assert tree(kd) == tree(ref_kd)
    assert not leftovers(world.ref_exp)  # package locks the experiment it reads too


# ---------------------------------------------------------------- resuming, in-process


class _Stop(Exception):
    pass


@pytest.mark.parametrize("step", [1, 2, 3])
def test_training_resumed_from_any_checkpoint_reaches_the_same_weights(tmp_path, step):
    """02_train stopped right after its checkpoint of `step` (1: mid-epoch 0, 2: the end of
    epoch 0, 3: mid-epoch 1), then trained again, ends with the weights of an uninterrupted
    fit: the resumed epoch goes on after the batches trained, with the same dropout."""
    import torch
    from lightning.pytorch import Callback

    from sleepdetect.config import load_config
    from sleepdetect.data.prepare import prepare
    from sleepdetect.training import fold as training

    class StopAfterCheckpoint(Callback):  # callbacks= come after the checkpoint callbacks
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == step:
                raise _Stop

    data = _series(tmp_path)
    keep = [o for o in KILL_DEMO if not o.startswith(("split.fold=", "tune.", "infer."))]

    def cfg(out: Path):
        overrides = [*keep, "split.fold=0", f"data.dir={data}", f"output.dir={out}"]
        return load_config(REPO / "params" / "demo.yaml", overrides)

    prepare(cfg(tmp_path / "ref"))
    shutil.copytree(
        Experiment(tmp_path / "ref" / "demo").prepared("train"),
        Experiment(tmp_path / "out" / "demo").prepared("train"),
    )
    want = torch.load(training.train(cfg(tmp_path / "ref")) / "model.pt", weights_only=True)

    with pytest.raises(_Stop):
        training.train(cfg(tmp_path / "out"), callbacks=[StopAfterCheckpoint()])
    last = Experiment(tmp_path / "out" / "demo").fold(0) / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == step
    got = torch.load(training.train(cfg(tmp_path / "out")) / "model.pt", weights_only=True)
    assert all(torch.equal(got[k], want[k]) for k in want)
