"""Local worker processes: one per device slot, each a plain ``harness`` command that joins
the same shared storage as the process that started it.

A slot is a GPU where there are several (``CUDA_VISIBLE_DEVICES``, an index into the list this
process inherited), else an equal share of the CPUs this process may use (``OMP_NUM_THREADS``):
its affinity mask, capped by a cgroup CPU quota (a container's ``--cpus``, a batch job's
share), because two trainers each using every core only fight.

A new Python process needs seconds before it can train (importing torch, MLflow and Optuna,
loading the data), and so does the parent before it has created the tracking store and the
queue.  So the parent starts its workers first, *held*: they do all of that at once, beside
it, and then wait on their stdin until the parent ``release``s them; only then do they open
either store, so that no worker races its parent to create one.  A held worker reports
nothing before its release: its parent checks the same study and says what is wrong, once.

``Crew`` is that protocol, the one copy ``run_study``, ``run_tune`` and the command line use:
``Crew.spawn`` starts the workers held; ``crew.preparing(held)`` wraps a process's checks (in a
held worker: errors wait for the release, then the imports and the wait); ``release`` once the
stores exist; ``crew.running`` around the trials; ``wait`` at the end; leaving the ``with
crew:`` block by an exception stops them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

from harness.config import Study, dump_yaml
from harness.errors import HarnessError, infrastructure_fault
from harness.tracking.credentials import off_argv

GO = "go"
P = ParamSpec("P")
R = TypeVar("R")


CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(*, cgroup_root: Path = CGROUP_ROOT,
                proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """The CPUs this process may use: ``os.cpu_count()`` counts the machine's, ignoring both
    the affinity mask (``taskset``, a shared node's allotment) and a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks here (macOS)
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root=cgroup_root, proc_cgroup=proc_cgroup)
    if quota is not None:
        # Threads beyond the quota are throttled, not run: a partial CPU is none to plan on.
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def cgroup_cpu_quota(*, cgroup_root: Path = CGROUP_ROOT,
                     proc_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup or any above it, cgroup v2
    (``cpu.max``) or v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None if unlimited."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            folders, files = [cgroup_root], ("cpu.max",)
        elif "cpu" in controllers.split(","):
            folders, files = [cgroup_root / controllers, cgroup_root / "cpu"], (
                "cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        for folder in folders:
            # Inside a container the cgroup path may name the host's hierarchy while only the
            # container's own part is mounted: every level that exists counts.
            here = folder / path.lstrip("/")
            for level in (here, *here.parents):
                if not level.is_relative_to(folder):
                    break
                limit = _cpu_limit(level, files)
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def _cpu_limit(folder: Path, files: tuple[str, ...]) -> float | None:
    try:
        if len(files) == 1:
            quota, period = (folder / files[0]).read_text().split()[:2]
        else:
            quota, period = ((folder / f).read_text().strip() for f in files)
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1") or int(period) <= 0:
        return None
    return int(quota) / int(period)


def cores_per_slot(n_slots: int) -> int:
    return max(1, usable_cpus() // n_slots)


def gpu_for_slot(slot: int, n_gpus: int, inherited: str | None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of worker ``slot``: the slot's GPU among those this process
    sees, named as its own ``CUDA_VISIBLE_DEVICES`` names them (``2,3``: slot 1 gets ``3``)."""
    visible = [d.strip() for d in (inherited or "").split(",") if d.strip()]
    if len(visible) >= n_gpus > 0:
        return visible[slot % n_gpus]
    return str(slot % n_gpus)


def tune_shares(n_trials: int, n_workers: int) -> list[int]:
    """How many of a search's ``n_trials`` each of ``n_workers`` processes runs, this one first."""
    return [n_trials // n_workers + (i < n_trials % n_workers) for i in range(n_workers)]


def limit_threads(n_slots: int) -> None:
    """This process's share of the cores when it trains beside worker processes (until the
    study ends: ``restores_threads``)."""
    import torch

    torch.set_num_threads(cores_per_slot(n_slots))


def restores_threads(fn: Callable[P, R]) -> Callable[P, R]:
    """Give the caller back its torch thread count when ``fn`` returns or raises: a study run
    in-process (a notebook, the tests) must not leave the rest of the session on one thread."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        import torch

        previous = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != previous:
                torch.set_num_threads(previous)

    return wrapper


def write_study(study: Study) -> Path:
    """The resolved study (overrides applied) as a file the workers can read."""
    folder = Path(tempfile.mkdtemp(prefix="harness-workers-"))
    path = folder / f"{study.name}.yaml"
    path.write_text(dump_yaml(study.model_dump(mode="json", exclude_defaults=True, by_alias=True)))
    return path


def spawn(command: str, study: Study | Path, per_worker_args: list[list[str]], *, device: str,
          n_slots: int, held: bool = False) -> list[subprocess.Popen]:
    """Start ``harness <command> <study> <args> --worker`` once per entry of ``per_worker_args``
    (slots 1.. of ``n_slots``; this process is slot 0).  ``study`` is the resolved study, or
    a study file that the workers load as this process does (its ``--set`` options among the
    args).  ``held`` workers prepare and then wait for ``release``."""
    study_file = study if isinstance(study, Path) else write_study(study)
    n_gpus = 0
    if device in ("auto", "cuda"):
        import torch

        n_gpus = torch.cuda.device_count()
    procs = []
    for slot, args in enumerate(per_worker_args, start=1):
        env = dict(os.environ, OMP_NUM_THREADS=str(cores_per_slot(n_slots)))
        if n_gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = gpu_for_slot(slot, n_gpus,
                                                       os.environ.get("CUDA_VISIBLE_DEVICES"))
        cmd = [sys.executable, "-m", "harness.cli", command, str(study_file), *args,
               "--device", device, "--worker"]
        if held:
            cmd.append("--held")
        # Every user of the machine can read a command line (ps): passwords go in the
        # environment, readable only by this user.
        cmd, secrets = off_argv(cmd)
        env.update(secrets)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                      stdin=subprocess.PIPE if held else None, text=True))
    return procs


def release(procs: list[subprocess.Popen]) -> None:
    """Tell held workers that the stores exist: they may open them now."""
    for proc in procs:
        if proc.stdin is not None and not proc.stdin.closed:
            try:
                proc.stdin.write(GO + "\n")
                proc.stdin.close()
            except OSError:  # it died while preparing; wait() reports its exit code
                pass


def prepare(*, tracking_uri: str) -> None:
    """Import now, while held, what opening the stores and the first trial would import
    (MLflow's client and its store, Optuna's storage, torch's compiler stack, which
    torch.optim loads at the first step): seconds of a new process's start-up."""
    import mlflow.tracking  # noqa: F401
    import optuna.storages  # noqa: F401

    if tracking_uri.startswith("sqlite:"):
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    elif tracking_uri.startswith(("http:", "https:")):
        import mlflow.store.tracking.rest_store  # noqa: F401
    try:
        import torch._dynamo  # noqa: F401
    except ImportError:  # a torch without it has nothing to load at the first step either
        pass


# Set by a supervisor (the tests, a start-up benchmark): a held worker creates this file once
# it has prepared and waits for its release, so the wait is observed, not guessed.
HELD_FILE = "HARNESS_HELD_FILE"


def wait_for_release() -> None:
    """Block until the parent releases this held worker (a line on stdin)."""
    if os.environ.get(HELD_FILE):
        Path(os.environ[HELD_FILE]).touch()
    if sys.stdin.readline().strip() != GO:
        raise HarnessError("the process that started this worker stopped before the study began")


@contextlib.contextmanager
def errors_left_to_parent(held: bool) -> Iterator[None]:
    """In a held worker, an error (a bad study, a missing dataset) waits for the release: the
    parent, checking the same study at the same moment, reports it once and stops this
    worker.  Released all the same, the worker reports it itself."""
    try:
        yield
    except HarnessError:
        if held:
            wait_for_release()
        raise


def wait(procs: list[subprocess.Popen]) -> list[str]:
    """Wait for every worker; a line for each that did not exit cleanly."""
    return [f"worker process {p.pid} exited with {p.wait()}" for p in procs if p.wait() != 0]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()


class Crew:
    """This process's local worker processes, from their held start to their exit."""

    def __init__(self, procs: Sequence[subprocess.Popen] = ()) -> None:
        self.procs = list(procs)

    @classmethod
    def spawn(cls, command: str, study: Study | Path, per_worker_args: list[list[str]], *,
              device: str, n_slots: int) -> Crew:
        """Held workers (``spawn``), none for an empty ``per_worker_args``."""
        if not per_worker_args:
            return cls()
        return cls(spawn(command, study, per_worker_args, device=device, n_slots=n_slots,
                         held=True))

    def __bool__(self) -> bool:
        return bool(self.procs)

    def __enter__(self) -> Crew:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:  # this process cannot lead the study: neither can they
            self.stop()

    @staticmethod
    @contextlib.contextmanager
    def preparing(held: bool, *, tracking_uri: str) -> Iterator[None]:
        """Around a process's checks before it opens any store.  In a held worker an error
        waits for the release (``errors_left_to_parent``); checks passed, it imports what the
        stores and the first trial need (``prepare``), then waits to be released."""
        with errors_left_to_parent(held):
            yield
            if held:
                prepare(tracking_uri=tracking_uri)
        if held:
            wait_for_release()

    @contextlib.contextmanager
    def running(self, *, tracker, leader: bool, display) -> Iterator[None]:
        """Around the trials this process and its released workers run.  An exception stops
        the workers first, then (``leader``: the process that started the study) closes the
        study as failed; the display hears that the study ended either way."""
        try:
            yield
        except BaseException as exc:
            self.stop()
            # Not on an infrastructure fault: the study is interrupted, not failed, and the
            # store may be what failed.
            if leader and infrastructure_fault(exc) is None:
                tracker.close_study(failed=True)
            raise
        finally:
            display.study_ended()

    def release(self) -> None:
        release(self.procs)

    def wait(self) -> list[str]:
        return wait(self.procs)

    def stop(self) -> None:
        stop(self.procs)
