"""benchmarks/gpu_check.py runs on the CPU as a smoke test, so it works the day a GPU runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_every_check_on_the_cpu_and_prints_one_table(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
         "--skip", "compile"],  # the compiled path has its own CPU test (test_fit_compiled)
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout[done.stdout.index("gpu_check on cpu"):]
    for check in ("throughput", "precision", "determinism", "resume", "workers"):
        assert f" {check} " in table
    assert "FAIL" not in table
    (line,) = [ln for ln in table.splitlines() if "train.deterministic: true" in ln]
    assert line.split()[0] == "ok" and "bit-identical" in line
    assert "equal to the uninterrupted trial" in table and "4/4 finished" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_the_gpu_check_says_there_is_no_cuda_device_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no CUDA device here" in done.stderr
