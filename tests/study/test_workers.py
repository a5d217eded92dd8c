"""How local workers share a machine: the CPUs this process may use (affinity mask, cgroup
quota) and the GPUs it was given."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.study.workers import cgroup_cpu_quota, gpu_for_slot, usable_cpus


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to pin a process to one")
def test_a_process_pinned_to_one_cpu_gives_each_slot_one_core():
    code = ("from harness.study.workers import cores_per_slot, usable_cpus;"
            "print(usable_cpus(), cores_per_slot(1))")
    first = min(os.sched_getaffinity(0))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, preexec_fn=lambda: os.sched_setaffinity(0, {first}))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1"]  # os.cpu_count() says more


def _cgroup(tmp_path, line: str, files: dict[str, str]):
    tmp_path.mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(line + "\n")
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return {"cgroup_root": root, "proc_cgroup": proc}


def test_a_cgroup_v2_quota_caps_the_cpus_at_the_tightest_level(tmp_path):
    where = _cgroup(tmp_path, "0::/job/step", {"job/cpu.max": "150000 100000\n",
                                               "job/step/cpu.max": "max 100000\n"})
    assert cgroup_cpu_quota(**where) == 1.5
    assert usable_cpus(**where) == 1


def test_a_cgroup_v1_quota_caps_the_cpus_and_no_quota_leaves_the_affinity(tmp_path):
    where = _cgroup(tmp_path, "4:cpu,cpuacct:/docker/abc",
                    {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n",
                     "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(**where) == 1.0 and usable_cpus(**where) == 1
    unlimited = _cgroup(tmp_path / "u", "1:cpu:/", {"cpu/cpu.cfs_quota_us": "-1\n",
                                                    "cpu/cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_quota(**unlimited) is None
    assert usable_cpus(**unlimited) == len(os.sched_getaffinity(0))


def test_gpu_workers_index_the_gpus_this_process_was_given():
    assert [gpu_for_slot(s, 2, "2,3") for s in (1, 2, 3)] == ["3", "2", "3"]
    assert [gpu_for_slot(s, 4, None) for s in (1, 2, 3, 4)] == ["1", "2", "3", "0"]
    assert gpu_for_slot(1, 2, "GPU-aaaa,GPU-bbbb") == "GPU-bbbb"
