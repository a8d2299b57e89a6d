"""The benchmarks' own measuring tools (bench/scale.py, realism.py), the shipped model on
the generator's wider population (bench/variety.py), and bench/gpu.py --tiny (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sleepdetect.config import load_config
from sleepdetect.data.prepare import prepare
from sleepdetect.training.fold import train

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

from realism import auc  # noqa: E402
from scale import StepTimer, run_measured  # noqa: E402
from variety import TRAITS, top_event_errors  # noqa: E402

# A child that owns 200 MB and maps a 200 MB file that it and a forked process both read.
TREE = """
import json, mmap, os, sys, time
own = bytearray(200 * 2**20)
for i in range(0, len(own), 4096):
    own[i] = 1
with open(sys.argv[1], "rb") as f:
    shared = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
def touch():
    return sum(shared[i] for i in range(0, len(shared), 4096))
touch()
pid = os.fork()
if pid == 0:
    touch()
    time.sleep(1.0)
    os._exit(0)
time.sleep(1.0)
os.waitpid(pid, 0)
print(json.dumps({"done": True}))
"""


def test_tree_memory_counts_shared_pages_once_and_sees_the_workers(tmp_path):
    mapped = tmp_path / "features.bin"
    mapped.write_bytes(b"\1" * (200 * 2**20))
    figures = run_measured(TREE, [str(mapped)], interval=0.1)
    assert figures["done"] and figures["processes"] == 2  # the forked process was seen
    # owned: 200 MB (the fork shares it copy-on-write, so PSS counts it once)
    assert 0.18 < figures["peak_pss_anon_gb"] < 0.35
    # mapped by both, read by both: counted once in PSS, not twice
    assert 0.18 < figures["peak_pss_file_gb"] < 0.3
    assert figures["peak_worker_own_gb"] < 0.05  # the forked reader copied nothing
    assert figures["peak_pss_gb"] >= 0.38
    assert figures["wall_s"] >= 1.0


def test_step_timer_times_every_step_and_both_halves_of_the_epoch(tmp_path):
    cfg = load_config(
        None,
        [
            f"data.dir={tmp_path / 'data'}",
            f"output.dir={tmp_path}",
            "data.synthetic.series=3",
            "data.synthetic.days=3",
            "model.name=DayGRU",
            "model.downsample_rate=12",
            "model.params={hidden_size: 8, num_layers: 1, dropout: 0.0}",
            "prepare.features=[anglez, enmo, hour_sin, hour_cos]",
            "windows.length=2880",
            "windows.per_epoch=24",
            "windows.valid_stride=1440",
            "trainer.batch_size=8",
            "trainer.max_epochs=2",
            "trainer.max_minutes=0",
            "split.n_folds=3",
        ],
    )
    prepare(cfg)
    timer = StepTimer()
    train(cfg, callbacks=[timer])
    f = timer.figures(skip=1)
    assert f["steps"] == 6 and f["epoch_steps"] == 3 and f["batch_size"] == 8
    assert f["epoch_windows"] == 24
    assert len(timer.waits) == len(timer.steps) == 6
    assert f["epoch_train_s"] > 0 and f["epoch_valid_s"] > 0  # validation timed apart
    assert 0 <= f["wait_share"] < 1 and f["steps_per_s"] > 0
    assert f["peak_gpu_gb"] is None  # CPU


@pytest.mark.slow
def test_gpu_bench_tiny_runs_every_row_on_the_cpu():
    """make test-slow: bench/gpu.py --tiny goes through the GPU script's code paths on CPU."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--tiny"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [r["precision"] for r in result["train"]] == ["32"] + ["bf16-mixed"] * 3
    assert {r["model"] for r in result["train"]} == {"Spec2DCNN", "CenterNet", "DayGRU"}
    for row in result["train"]:
        assert row["steps_per_s"] > 0 and 0 <= row["wait_share"] < 1
        assert (Path(row["bundle"]) / "model.pt").is_file()
    infer = result["infer"]
    assert infer["projected_h_5_folds"] == pytest.approx(5 * infer["projected_h_one_model"])
    assert (Path(result["ddp"]["bundle"]) / "model.pt").is_file()


def test_realism_auc_is_the_chance_a_real_window_ranks_above_a_synthetic_one():
    y = np.array([1, 1, 0, 0])
    assert auc(y, np.array([0.9, 0.8, 0.2, 0.1])) == 1.0
    assert auc(y, np.array([0.1, 0.2, 0.8, 0.9])) == 0.0
    assert auc(y, np.full(4, 0.5)) == 0.5  # ties count half
    assert auc(y, np.array([0.9, 0.2, 0.5, 0.1])) == 0.75  # 3 of the 4 pairs in order


# The shipped model is trained without the wider population (variety: 0.3 lowered its score on
# the real nights). One seed of it lost its onsets on a noisier sensor (median 58 min off); the
# three seeds averaged hold them (24.4 min with the habit feature, 15.5 without), so every
# trait is asserted.
@pytest.mark.parametrize("trait", list(TRAITS))
def test_the_shipped_model_does_not_collapse_on_people_unlike_the_children(trait):
    from sleepdetect.stages.predict import DEFAULT_MODEL, load_model

    errors = top_event_errors(load_model(DEFAULT_MODEL)[1], TRAITS[trait])
    assert len(errors) >= 8  # nights, (onset, wakeup) minutes off
    assert (np.median(errors, axis=0) < 30).all(), np.median(errors, axis=0)
    assert ((errors < 60).mean(axis=0) > 0.6).all(), (errors < 60).mean(axis=0)
