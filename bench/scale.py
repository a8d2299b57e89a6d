"""What the full-scale benchmarks share (bench/prepare.py, train.py --full, infer.py --full,
growth.py): synthetic data at competition scale, cached; each stage run in a child process
whose peak memory is sampled together with its data-loader workers'; and a step timer.

Memory is counted with PSS (/proc/<pid>/smaps_rollup): a page shared by the run and its
workers is counted once, split between them, so the total is what the run costs the machine.
Of it, the file part is memory-mapped feature pages (page cache: shared, dropped under memory
pressure) and the anonymous part is what the processes own. A worker that copied the arrays
would show it in its own (private dirty) memory; pages of the mapped files that only it read
are private too but clean, page cache that costs nothing to drop.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

from sleepdetect.data.synthetic import FULL_SCALE, write_synthetic
from sleepdetect.experiment import Experiment

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache"
GB = 2**30


def synthetic_data(n_series: int, days: float = FULL_SCALE["days"], seed: int = 0) -> Path:
    """The synthetic competition files of `n_series` series (mean length `days`), written into
    bench/.cache once: the same arguments give byte-identical files."""
    data = CACHE / f"synthetic-{n_series}x{days:g}-seed{seed}"
    if not (data / "train_events.csv").is_file():
        print(f"generating {n_series} synthetic series into {data} ...", flush=True)
        start = time.perf_counter()
        shutil.rmtree(data, ignore_errors=True)
        write_synthetic(data, n_series=n_series, days=days, seed=seed)
        print(f"  generated in {time.perf_counter() - start:.0f} s", flush=True)
    return data


# ---------------------------------------------------------------- memory of a process tree


def _rollup(pid: int) -> dict[str, int]:
    """Bytes by smaps_rollup field of one process ({} once it has gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines()[1:]:
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0]) * 1024
    return out


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (data-loader workers, DDP ranks)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += parents.get(p, [])
    return tree


class TreeMemory:
    """Samples the memory of a process and its descendants every `interval` seconds, in a
    thread, and keeps the peaks (bytes). Reading smaps_rollup walks a process's page tables:
    at 0.2 s it took a fifth of a core from the run it measured, at 1 s a few percent."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        if not Path("/proc/self/smaps_rollup").is_file():  # zeros would read as a result
            raise SystemExit("bench/scale.py reads /proc/<pid>/smaps_rollup: Linux 4.14+ only")
        self.pid, self.interval = pid, interval
        self.peak = {"pss": 0, "pss_anon": 0, "pss_file": 0, "main_rss": 0, "worker_own": 0}
        self.max_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        pids = _descendants(self.pid)
        rollups = {p: _rollup(p) for p in pids}
        rollups = {p: r for p, r in rollups.items() if r}
        if not rollups:
            return
        now = {
            "pss": sum(r.get("Pss", 0) for r in rollups.values()),
            "pss_anon": sum(r.get("Pss_Anon", 0) for r in rollups.values()),
            "pss_file": sum(r.get("Pss_File", 0) for r in rollups.values()),
            "main_rss": rollups.get(self.pid, {}).get("Rss", 0),
            "worker_own": max(
                (r.get("Private_Dirty", 0) for p, r in rollups.items() if p != self.pid),
                default=0,
            ),
        }
        for key, value in now.items():
            self.peak[key] = max(self.peak[key], value)
        self.max_processes = max(self.max_processes, len(rollups))

    def figures(self) -> dict:
        """Peaks in GB, and the most processes seen at once."""
        return {f"peak_{k}_gb": v / GB for k, v in self.peak.items()} | {
            "processes": self.max_processes
        }


def run_measured(code: str, args: list[str], interval: float = 1.0) -> dict:
    """Run `python -c code *args` with the memory of its process tree sampled; returns the
    JSON object its last line of output prints, with the memory peaks and the wall time added."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "SLEEPDETECT_PLAIN_PROGRESS": "1"},
    )
    with TreeMemory(proc.pid, interval) as memory:
        out, err = proc.communicate()
    if proc.returncode:
        sys.exit(f"benchmark child failed ({' '.join(args)}):\n{err[-4000:]}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) | memory.figures() | {"wall_s": time.perf_counter() - start}


# ---------------------------------------------------------------- the stages, each in a child

_PREPARE = """
import json, sys
from sleepdetect.config import load_config
from sleepdetect.data.prepare import prepare
m = prepare(load_config(sys.argv[1], sys.argv[2:]))
print(json.dumps({"series": len(m.series), "steps": int(sum(s.n_steps for s in m.series))}))
"""

_TRAIN = """
import json, sys
sys.path.insert(0, "bench")
from scale import StepTimer
from sleepdetect.config import load_config
from sleepdetect.training.fold import train
timer = StepTimer()
train(load_config(sys.argv[1], sys.argv[2:]), callbacks=[timer])
print(json.dumps(timer.figures()))
"""

_INFER = """
import json, sys
from sleepdetect.config import load_config
from sleepdetect.data.prepare import Manifest
from sleepdetect.experiment import Experiment
from sleepdetect.stages.infer import infer
cfg = load_config(sys.argv[1], sys.argv[2:])
infer(cfg)
m = Manifest.load(Experiment.of(cfg).prepared(cfg.infer.phase))
print(json.dumps({"series": len(m.series), "steps": int(sum(s.n_steps for s in m.series))}))
"""


def exp_dir(n_series: int) -> Path:
    """Where the benchmarks' demo experiment of `n_series` series lives."""
    return CACHE / f"scale-{n_series}" / "demo"


def experiment(n_series: int, *extra: str) -> list[str]:
    """Arguments of a child: demo.yaml with the data and output under bench/.cache."""
    data = synthetic_data(n_series)
    return [
        str(REPO / "params" / "demo.yaml"),
        f"data.dir={data}",
        f"output.dir={CACHE / f'scale-{n_series}'}",
        *extra,
    ]


def measure_prepare(n_series: int) -> dict:
    """01_prepare of `n_series` series afresh (the experiment's folder is replaced)."""
    args = experiment(n_series)
    shutil.rmtree(exp_dir(n_series), ignore_errors=True)
    return run_measured(_PREPARE, args)


def measure_train(n_series: int, windows_per_series: int = 4, workers: int = 2) -> dict:
    """Two epochs of fold 0 (5 folds by series) with `workers` data-loader workers; the
    figures are the second epoch's (the first also starts the workers). One epoch draws
    `windows_per_series` windows a training series and validates every validation series."""
    n_train = n_series - n_series // 5
    shutil.rmtree(
        Experiment(exp_dir(n_series)).fold(0), ignore_errors=True
    )  # trained afresh, not resumed
    args = experiment(
        n_series,
        "split.n_folds=5",
        "split.fold=0",
        f"windows.per_epoch={windows_per_series * n_train}",
        f"trainer.num_workers={workers}",
        "trainer.max_epochs=2",
        "trainer.max_minutes=0",
    )
    return run_measured(_TRAIN, args)


def measure_infer(n_series: int) -> dict:
    """03_infer of every training series (`infer.phase=train`, so it is also scored) with the
    fold measure_train trained; the prepared data is measure_prepare's."""
    return run_measured(_INFER, experiment(n_series, "infer.phase=train"))


def make_ready(n_series: int, trained: bool = False) -> None:
    """Prepare (and train, with `trained`) the demo experiment of `n_series` series unless an
    earlier run of these benchmarks left it in bench/.cache."""
    exp = exp_dir(n_series)
    if not (Experiment(exp).prepared("train") / "manifest.json").is_file():
        measure_prepare(n_series)
    if trained and not Experiment(exp).bundles():
        measure_train(n_series)


def prepared_gb(n_series: int) -> float:
    """Size of the prepared feature arrays of `n_series` series (what the runs memory-map)."""
    files = Experiment(exp_dir(n_series)).prepared("train").rglob("*.npy")
    return sum(f.stat().st_size for f in files) / GB


def memory_line(row: dict) -> str:
    """The memory figures of one measured child, in words."""
    return (
        f"peak {row['peak_pss_gb']:.2f} GB in {row['processes']} process(es) (PSS: "
        f"{row['peak_pss_anon_gb']:.2f} GB private, {row['peak_pss_file_gb']:.2f} GB mapped "
        f"feature pages); a worker's own (private dirty) memory at most "
        f"{row['peak_worker_own_gb']:.2f} GB"
    )


def windows_per_s(row: dict) -> float:
    """Training windows a second of measure_train's last epoch (validation not counted)."""
    return row["epoch_windows"] / row["epoch_train_s"]


# ---------------------------------------------------------------- timing training steps


class StepTimer(Callback):
    """Wall time of each training step, of the wait for its batch (from the end of the step
    before: loading, collating, moving to the device), of each epoch's training and
    validation, and the peak GPU memory. Steps are timed after the device has finished."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.waits: list[float] = []
        self.epochs: list[dict] = []
        self.batch_size = 0
        self.peak_gpu_gb: float | None = None
        self._mark = 0.0

    def _now(self, pl_module) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark = self._now(pl_module)
        self.epochs.append({"train_start": self._mark, "steps": 0, "windows": 0})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = self._now(pl_module)
        self.waits.append(now - self._mark)
        self._mark = now
        self.batch_size = max(self.batch_size, len(batch[0]))
        self.epochs[-1]["windows"] += len(batch[0])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self._now(pl_module)
        self.steps.append(now - self._mark)
        self._mark = now
        self.epochs[-1]["steps"] += 1

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.epochs:  # Lightning validates before the training epoch ends
            self.epochs[-1]["valid_start"] = self._now(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.epochs:
            self.epochs[-1]["valid_end"] = self._now(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs[-1]["end"] = self._now(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            self.peak_gpu_gb = torch.cuda.max_memory_allocated(pl_module.device) / GB

    def figures(self, skip: int = 2) -> dict:
        """Steps/s and the share of time spent waiting for batches over the steps after the
        first `skip` (warm-up), and the last epoch's times."""
        steps, waits = self.steps[skip:] or self.steps, self.waits[skip:] or self.waits
        busy, idle = sum(steps), sum(waits)
        last = self.epochs[-1] if self.epochs else {}
        train_end = last.get("valid_start", last.get("end"))
        valid_s = last["valid_end"] - last["valid_start"] if "valid_end" in last else None
        return {
            "steps": len(self.steps),
            "batch_size": self.batch_size,
            "steps_per_s": len(steps) / max(busy + idle, 1e-9),
            "wait_share": idle / max(busy + idle, 1e-9),
            "epoch_steps": last.get("steps", 0),
            "epoch_windows": last.get("windows", 0),
            "epoch_train_s": train_end - last["train_start"] if train_end else None,
            "epoch_valid_s": valid_s,
            "peak_gpu_gb": self.peak_gpu_gb,
        }
