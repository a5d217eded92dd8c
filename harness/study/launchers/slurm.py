"""A study's queue workers as one SLURM job array, through submitit.

``harness run STUDY --launcher slurm --workers N`` (``launch_run``) checks everything on the
submitting machine first: ``sbatch`` is there, the stores and the work folder are ones every
node sees (``check_shared``), the scheduler accepts the request (``sbatch --test-only``).  Only
then does it open the study's parent run (an adaptive study's plan is recorded here, before
any trial), enqueue every trial not yet FINISHED in the shared queue, and submit N array tasks.
Each task (``QueueWorker``) runs the same ``harness run STUDY --storage … --tracking-uri …``
worker as one started by hand; the queue, not SLURM, decides which trial runs where.
``harness tune --launcher slurm`` (``launch_tune``) does the same for a shared Optuna search.

What the scheduler does to a task, and what survives it:

- ``scancel``, a node failure, preemption or ``scontrol requeue``: the worker dies mid-trial.
  Its trial's heartbeat stops; after three beats another worker (or the task itself, once
  requeued) takes the trial over and resumes it, in the same MLflow run, from the last epoch
  checkpointed in the shared work folder (``<work>/<study>/<trial key>/last.pt``).  Finished
  trials are in the tracking store already; none runs twice.
- The time limit: SLURM signals USR2 ``signal_delay_s`` before it; submitit requeues the task
  (``launch.max_requeues`` times), which rejoins the queue and resumes as above.

Where things must live (``check_shared``): the queue in PostgreSQL, the tracking store an
MLflow server or a database, the work folder (running trials' checkpoints, and each
submission's logs, submitit files and frozen study file under ``<work>/<study>/slurm/``) on a
filesystem every node mounts.  An ``sqlite:///`` queue, a local tracking store or a work folder
on a local disk are refused unless ``launch.shared_fs: true`` says that every task sees the
same files (one machine, as a test cluster is).

Credentials never reach a task's command line or the files beside its logs: the URLs there
carry no password; the passwords travel in the job's environment (sbatch exports the
submitting environment) as they do to a local worker (``tracking.credentials``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from harness.config import LaunchConfig, Study, dump_yaml
from harness.errors import ConfigError, HarnessError
from harness.tracking.credentials import off_argv
from harness.uris import redact_uri

if TYPE_CHECKING:
    from harness.study.options import Display

JOBS_FILE = "launch/jobs.json"

# Filesystems that several machines mount (checked against /proc/mounts).
NETWORK_FS = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "ceph", "fuse.ceph", "cifs", "smb3", "smbfs",
    "glusterfs", "fuse.glusterfs", "panfs", "wekafs", "fuse.sshfs", "fuse.juicefs", "orangefs",
    "pvfs2", "afs", "fuse.s3fs",
})

# SLURM's job states as this launcher reports them.
PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESIZING",
           "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
DONE = {"COMPLETED"}


# ---------------------------------------------------------------------------------------------
# What a launch needs, checked before anything is recorded


def launch_overrides(items: list[str] | None) -> list[str]:
    """``--launch key=value`` as the ``--set launch.key=value`` overrides they stand for; an
    unknown key is one line listing the valid ones."""
    out = []
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--launch {item!r}: expected key=value, e.g. partition=gpu")
        if key not in LaunchConfig.model_fields:
            raise ConfigError(f"--launch {key}: unknown key; valid:"
                              f" {', '.join(LaunchConfig.model_fields)}")
        if key in _TEXT_KEYS:  # as written: time=4:00:00 is not YAML's base-60 number
            value = json.dumps(value)
        out.append(f"launch.{key}={value}")
    return out


_TEXT_KEYS = {"partition", "account", "qos", "time", "mem_per_worker", "constraint", "python",
              "work_root"}


def check_sbatch() -> None:
    for command in ("sbatch", "srun", "squeue"):
        if shutil.which(command) is None:
            raise HarnessError(f"--launcher slurm: {command} is not on the PATH; run this on a"
                               " machine that submits SLURM jobs (a login node)")


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` (or its nearest existing parent) is on."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    path = path.resolve()
    best, kind = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].encode().decode("unicode_escape")  # \040 is a space
        if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) \
                and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind


def _local_tracking_path(uri: str) -> Path | None:
    """The file or folder of a tracking store that lives on this machine's disk, if it does."""
    scheme = uri.split(":", 1)[0] if "://" in uri else ""
    if scheme == "sqlite":
        return Path(uri.removeprefix("sqlite:///"))
    if scheme == "file":
        return Path(urlsplit(uri).path)
    if scheme == "":
        return Path(uri)
    return None


def check_shared(cfg: LaunchConfig, *, storage_url: str | None, tracking_uri: str,
                 work_root: Path) -> None:
    """Refuse, with one line, stores and a work folder that only this machine sees."""
    if storage_url is None:
        raise HarnessError("--launcher slurm: give --storage postgresql://USER@HOST/DB, the"
                           " queue every task pulls its trials from")
    if storage_url.startswith("sqlite:") and not cfg.shared_fs:
        raise HarnessError(
            f"--storage {redact_uri(storage_url)}: an SQLite queue is one machine's file (its"
            " locks do not hold across nodes); use postgresql://…, or set launch.shared_fs: true"
            " when every task runs where this file is (one machine)")
    local = _local_tracking_path(tracking_uri)
    if local is not None and not cfg.shared_fs:
        raise HarnessError(
            f"--tracking-uri {redact_uri(tracking_uri)}: a local store only this machine sees;"
            " give an MLflow server (http://…) or a database every node reaches, or set"
            f" launch.shared_fs: true when every node sees {local}")
    kind = filesystem_type(work_root)
    if kind not in NETWORK_FS and not cfg.shared_fs:
        raise HarnessError(
            f"work folder {work_root}: on {kind}, a disk only this machine sees; running trials'"
            " checkpoints must be where every node reads them: give --work-root (or"
            " launch.work_root) on a shared filesystem (nfs, lustre, gpfs, beegfs, …), or set"
            " launch.shared_fs: true when it is shared (one machine)")


def task_credentials(storage_url: str, tracking_uri: str) -> tuple[str, str, dict[str, str]]:
    """The storage URL and tracking URI a task's command line shows (no password), and the
    environment that carries the passwords instead: the same hand-over as a local worker's
    (``tracking.credentials.off_argv``; the task's ``harness`` puts them back)."""
    argv, env = off_argv(["--storage", storage_url, "--tracking-uri", tracking_uri])
    return argv[1], argv[3], env


@contextlib.contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    """``extra`` in this process's environment while sbatch copies it into the job's."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------------------------------------
# The array task


try:
    from submitit.helpers import Checkpointable as _Requeued
except ImportError:  # pragma: no cover - submitit is a dependency; this keeps imports cheap
    _Requeued = object  # type: ignore[misc,assignment]


class QueueWorker(_Requeued):
    """One array task: ``harness <argv>`` in a child process, a queue worker like any other.

    At the time limit (or a preemption that signals first) submitit calls ``checkpoint`` and
    requeues the task with the same arguments: it rejoins the queue, and the trial it was
    running resumes from its last epoch there or in another task.
    """

    def __init__(self, argv: list[str]) -> None:
        self.argv = list(argv)

    def __call__(self, task: int) -> int:
        cmd = [sys.executable, "-m", "harness.cli", *self.argv]
        env = dict(os.environ)
        if os.environ.get("SLURM_CPUS_PER_TASK"):  # torch would use every core of the node
            env.setdefault("OMP_NUM_THREADS", os.environ["SLURM_CPUS_PER_TASK"])
        job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "?")
        print(f"harness: task {task} of SLURM job {job} on {socket.gethostname()}:"
              f" harness {shlex.join(self.argv)}", flush=True)
        code = subprocess.call(cmd, env=env)
        if code != 0:
            raise RuntimeError(f"the harness worker exited with {code} (its output is above)")
        return code


# ---------------------------------------------------------------------------------------------
# Submitting


@dataclass
class Submission:
    """A submitted job array, as recorded on the study's parent run (``launch/jobs.json``)."""

    job_id: str
    n_tasks: int
    log_dir: str
    submitted_at: float
    command: str
    kind: str = "run"

    def record(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gpus_per_worker(cfg: LaunchConfig, device: str) -> int:
    """launch.gpus_per_worker, else one GPU per worker unless the workers train on the CPU."""
    if cfg.gpus_per_worker is not None:
        return cfg.gpus_per_worker
    return 0 if device == "cpu" else 1


def executor_parameters(cfg: LaunchConfig, *, name: str, n_tasks: int,
                        device: str) -> dict[str, Any]:
    """submitit's SlurmExecutor parameters for the launch section."""
    params: dict[str, Any] = {"job_name": name, "time": cfg.timeout_min,
                              "array_parallelism": cfg.parallelism or n_tasks}
    for key, value in (("partition", cfg.partition), ("account", cfg.account),
                       ("qos", cfg.qos), ("constraint", cfg.constraint),
                       ("cpus_per_task", cfg.cpus_per_worker)):
        if value is not None:
            params[key] = value
    gpus = gpus_per_worker(cfg, device)
    if gpus:
        params["gpus_per_node"] = gpus
    if cfg.setup:
        params["setup"] = list(cfg.setup)
    extra = {str(k): v for k, v in cfg.sbatch.items()}
    if cfg.mem_per_worker is not None:
        extra["mem"] = cfg.mem_per_worker
    if extra:
        params["additional_parameters"] = extra
    return params


def make_executor(cfg: LaunchConfig, *, log_dir: Path, name: str, n_tasks: int, device: str):
    from submitit import SlurmExecutor

    executor = SlurmExecutor(folder=log_dir, max_num_timeout=cfg.max_requeues,
                             python=cfg.python)
    try:
        executor.update_parameters(**executor_parameters(cfg, name=name, n_tasks=n_tasks,
                                                         device=device))
    except ValueError as exc:  # an #SBATCH option submitit cannot write
        raise ConfigError(f"launch: {' '.join(str(exc).split())[:300]}") from None
    return executor


def test_only(executor, *, n_tasks: int) -> None:
    """``sbatch --test-only`` with the script submitit will submit: a partition, account,
    time or resource the scheduler refuses is its own error line, before anything is recorded."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = {**executor.parameters, "map_count": n_tasks if n_tasks > 1 else None}
    with tempfile.TemporaryDirectory(prefix="harness-sbatch-") as tmp:
        script = Path(tmp) / "test.sh"
        script.write_text(_make_sbatch_string(command="true", folder=tmp, **params))
        done = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True,
                              text=True, timeout=60)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()
                 if line.strip()]
        reason = "; ".join(dict.fromkeys(lines))[:400] or f"exit code {done.returncode}"
        raise HarnessError(f"launch: sbatch refused the job array ({reason}); check"
                           " launch.partition, account, qos, time and the per-worker resources"
                           " (sinfo lists the partitions)")


def submit(executor, worker: QueueWorker, *, n_tasks: int, env: dict[str, str]) -> str:
    """Submit ``n_tasks`` array tasks; the job id."""
    with _environment(env):
        try:
            if n_tasks > 1:
                jobs = executor.map_array(worker, list(range(n_tasks)))
            else:
                jobs = [executor.submit(worker, 0)]
        except Exception as exc:  # noqa: BLE001 - sbatch's error, as submitit wraps it
            reason = " ".join(str(exc).split())[:400]
            raise HarnessError(f"launch: sbatch failed ({reason}); the queued trials wait for"
                               " the next launch, which joins them") from None
    return jobs[0].job_id.split("_")[0]


def submission_folder(work_root: Path, name: str) -> Path:
    """A new folder for one submission's logs, submitit files and frozen study file."""
    base = work_root / name / "slurm"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, n = base / stamp, 1
    while folder.exists():
        n += 1
        folder = base / f"{stamp}-{n}"
    return folder


def record_submission(tracker, submission: Submission) -> None:
    """Append the job to the study's parent run, where ``harness status`` finds it."""
    jobs = recorded_submissions(tracker)
    jobs.append(submission.record())
    tracker.save_study_file(JOBS_FILE, json.dumps(jobs, indent=2) + "\n")


# MLflow draws a download bar on stderr for every file it reads back, unless told not to.
QUIET_DOWNLOADS = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def quietly(read: Callable[..., Any], *args: Any) -> Any:
    """``read(*args)`` without MLflow's download bars."""
    with _environment(QUIET_DOWNLOADS):
        return read(*args)


def recorded_submissions(tracker) -> list[dict[str, Any]]:
    if tracker.parent_run_id is None:
        return []
    with _environment(QUIET_DOWNLOADS):
        text = tracker.read_study_file(JOBS_FILE)
    return json.loads(text) if text else []


@dataclass
class Launched:
    """What ``launch_run``/``launch_tune`` did."""

    submission: Submission | None
    n_queued: int
    n_finished: int
    lines: list[str] = field(default_factory=list)


def _prepare(study: Study, *, name: str, kind: str, n_workers: int, device: str,
             storage_url: str | None, tracking_uri: str, work_root: Path | None):
    """Checks shared by run and tune; the executor, folder and work root, nothing recorded."""
    check_sbatch()
    cfg = study.launch
    work = Path(work_root or cfg.work_root or os.environ.get("HARNESS_WORK")
                or "mlruns/work").absolute()
    check_shared(cfg, storage_url=storage_url, tracking_uri=tracking_uri, work_root=work)
    folder = submission_folder(work, name)
    executor = make_executor(cfg, log_dir=folder, name=f"harness-{kind}-{study.name}",
                             n_tasks=n_workers, device=device)
    test_only(executor, n_tasks=n_workers)
    return cfg, executor, folder, work


def _worker_argv(command: str, study_file: Path, *, storage: str, tracking: str, device: str,
                 data_root: Path | None, extra: list[str]) -> list[str]:
    argv = [command, str(study_file), "--storage", storage, "--tracking-uri", tracking,
            "--device", device, *extra]
    if data_root is not None:
        argv += ["--data-root", str(Path(data_root).absolute())]
    return argv


def _freeze(study: Study, folder: Path) -> Path:
    """The study as submitted (overrides applied), beside the logs: a task requeued later
    runs what was submitted, whatever happens to the file meanwhile."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{study.name}.yaml"
    path.write_text(dump_yaml(study.model_dump(mode="json", exclude_defaults=True,
                                               by_alias=True)))
    return path


def launch_run(study: Study, *, n_workers: int, tracker, storage_url: str | None,
               device: str = "auto", heartbeat_s: float = 30.0, data_root: Path | None = None,
               work_root: Path | None = None, max_trials: int | None = None,
               plan: dict | None = None) -> Launched:
    """Enqueue the study's unfinished trials (an adaptive study: its ``plan``, made by
    ``harness.report.adaptive.make_plan``, then its next round) and submit ``n_workers`` queue
    workers as one job array."""
    from harness.design.grid import check_size
    from harness.study.options import default_data_root

    check_size(study, max_trials=max_trials or 100_000)
    # Given to the workers too, absolute, so that they key trials as this process does.
    data_root = Path(data_root or default_data_root()).absolute()
    assert study.adaptive is None or plan is not None, "an adaptive study needs its plan"
    _, executor, folder, work = _prepare(
        study, name=study.name, kind="run", n_workers=n_workers, device=device,
        storage_url=storage_url, tracking_uri=tracker.uri, work_root=work_root)
    assert storage_url is not None
    _open_run(study, tracker, storage_url)
    target, state = _launch_target(study, tracker, plan)
    if target is None:
        tracker.close_study(failed=False)
        return Launched(None, 0, 0, [f"{study.name}: every comparison of its plan is"
                                     " decided; nothing to launch"])
    todo, n_finished = _enqueue(study, target, tracker, storage_url=storage_url,
                                data_root=data_root, heartbeat_s=heartbeat_s)
    if not todo:
        tracker.close_study(failed=False)
        return Launched(None, 0, n_finished, [f"{study.name}: all {n_finished} trials already"
                                              " finished; nothing to launch"])
    if study.adaptive is None:  # a task beyond the trials would only find the queue empty
        n_workers = min(n_workers, len(todo))
    submission = _submit_run(study, executor, tracker=tracker, storage_url=storage_url,
                             folder=folder, work=work, n_workers=n_workers, device=device,
                             data_root=data_root, heartbeat_s=heartbeat_s,
                             max_trials=max_trials)
    what = (f"trials of round {state.next_look + 1}" if study.adaptive is not None
            else "trials")
    return Launched(submission, len(todo), n_finished, [
        f"{study.name}: {len(todo)} {what} queued ({n_finished} already finished) in"
        f" {redact_uri(storage_url)}",
        _job_line(submission),
    ])


def _open_run(study: Study, tracker, storage_url: str) -> None:
    """Reach the queue's storage and the tracking store, and open the study's parent run."""
    import optuna

    from harness.study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    open_storage(storage_url)  # unreachable or wrong credentials: one line, nothing recorded
    tracker.check()
    tracker.open_study(study)


def _launch_target(study: Study, tracker, plan: dict | None):
    """The study whose trials to enqueue, and an adaptive study's state: its next round, once
    its plan is recorded (before any trial, as a local run does); None when the plan is
    decided."""
    if study.adaptive is None:
        return study, None
    from harness.design.plan import round_study
    from harness.study.adaptive import record_plan

    state = record_plan(tracker, study, plan)
    if state.finished:
        return None, state
    return round_study(study, state, state.plan["looks"][state.next_look]), state


def _enqueue(study: Study, target: Study, tracker, *, storage_url: str, data_root: Path,
             heartbeat_s: float) -> tuple[list[str], int]:
    """Put the target's trials not yet finished in the shared queue: their keys, and how many
    trials finished already."""
    from harness.design.grid import expand
    from harness.study.queue import WorkQueue, open_queue_storage

    # The keys the workers compute: a relative data.path is under their data root.
    specs = expand(target, data_root=data_root)
    done = {t.trial_key for t in tracker.finished()}
    todo = [s.trial_key for s in specs
            if s.trial_key not in done and s.legacy_trial_key not in done]
    if todo:
        queue_storage = open_queue_storage(storage_url, heartbeat_s=heartbeat_s)
        WorkQueue.join(queue_storage, study_name=study.name,
                       all_keys=[s.trial_key for s in specs], pending_keys=todo,
                       heartbeat_s=heartbeat_s)
    return todo, len(specs) - len(todo)


def _submit_run(study: Study, executor, *, tracker, storage_url: str, folder: Path, work: Path,
                n_workers: int, device: str, data_root: Path, heartbeat_s: float,
                max_trials: int | None) -> Submission:
    """Submit the queue workers (passwords in the job's environment, not on their command
    line) and record the job on the study's parent run."""
    storage, tracking, env = task_credentials(storage_url, tracker.uri)
    extra = ["--heartbeat", f"{heartbeat_s:g}"]
    if max_trials is not None:
        extra += ["--max-trials", str(max_trials)]
    argv = _worker_argv("run", _freeze(study, folder), storage=storage, tracking=tracking,
                        device=device, data_root=data_root, extra=extra)
    env["HARNESS_WORK"] = str(work)
    job_id = submit(executor, QueueWorker(argv), n_tasks=n_workers, env=env)
    submission = Submission(job_id, n_workers, str(folder), time.time(),
                            "harness " + shlex.join(argv))
    record_submission(tracker, submission)
    return submission


def _job_line(submission: Submission) -> str:
    """The line that says which SLURM job was submitted, its workers and where its logs are."""
    job_id, n_workers, folder = submission.job_id, submission.n_tasks, submission.log_dir
    return (f"SLURM job {job_id}: {n_workers} worker{'s' if n_workers > 1 else ''}"
            f"{f' (array 0-{n_workers - 1})' if n_workers > 1 else ''}, logs in {folder}")


def launch_tune(study: Study, *, n_workers: int, n_trials: int, tracker,
                storage_url: str | None, device: str = "auto", data_root: Path | None = None,
                work_root: Path | None = None) -> Launched:
    """Create (or resume) the search in the shared storage and submit ``n_workers`` tasks that
    pull its trials until it holds ``n_trials`` more than now."""
    import optuna

    from harness.study.storage import open_storage
    from harness.study.tune import check_space, make_pruner, make_sampler

    if study.adaptive is not None:
        raise ConfigError(f"{study.source}: seeds: adaptive seeds belong to harness run; give"
                          " a list of seeds for harness tune")
    check_space(study)
    _, executor, folder, work = _prepare(
        study, name=f"{study.name}-tune", kind="tune", n_workers=n_workers, device=device,
        storage_url=storage_url, tracking_uri=tracker.uri, work_root=work_root)
    assert storage_url is not None
    storage = open_storage(storage_url)
    tracker.check()
    tracker.open_study(study, mode="tune")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    search = optuna.create_study(study_name=study.name, storage=storage, load_if_exists=True,
                                 direction=study.tune.direction, sampler=make_sampler(study),
                                 pruner=make_pruner(study))
    n_before = len(search.get_trials(deepcopy=False))
    target = n_before + n_trials
    url, tracking, env = task_credentials(storage_url, tracker.uri)
    argv = _worker_argv("tune", _freeze(study, folder), storage=url, tracking=tracking,
                        device=device, data_root=data_root,
                        extra=["--trials", str(n_trials), "--until", str(target)])
    env["HARNESS_WORK"] = str(work)
    job_id = submit(executor, QueueWorker(argv), n_tasks=n_workers, env=env)
    submission = Submission(job_id, n_workers, str(folder), time.time(),
                            "harness " + shlex.join(argv), kind="tune")
    record_submission(tracker, submission)
    return Launched(submission, n_trials, n_before, [
        f"{study.name}: search of {n_before} trials, {n_trials} more to run (until it holds"
        f" {target}) in {redact_uri(storage_url)}",
        _job_line(submission),
    ])


# ---------------------------------------------------------------------------------------------
# Looking at the jobs


@dataclass
class TaskState:
    job_id: str
    task: int
    state: str  # SLURM's word (PENDING, RUNNING, COMPLETED, CANCELLED, TIMEOUT …)
    where: str  # the node, or why it waits
    out: Path
    err: Path
    array: bool = True  # one task of a job array (job_task), or a job of its own

    @property
    def kind(self) -> str:
        """pending | running | done | failed | unknown"""
        if self.state in PENDING:
            return "pending"
        if self.state in RUNNING:
            return "running"
        if self.state in DONE:
            return "done"
        return "unknown" if self.state == "UNKNOWN" else "failed"

    @property
    def ended(self) -> bool:
        return self.kind in ("done", "failed", "unknown")

    @property
    def name(self) -> str:
        return f"{self.job_id}_{self.task}" if self.array else self.job_id


def _log_paths(record: dict[str, Any], task: int) -> tuple[Path, Path]:
    from submitit.core.utils import JobPaths

    job = f"{record['job_id']}_{task}" if record["n_tasks"] > 1 else record["job_id"]
    paths = JobPaths(record["log_dir"], job_id=job, task_id=0)
    return paths.stdout, paths.stderr


def _scheduler_states(job_id: str) -> dict[int, tuple[str, str]]:
    """Task → (state, node or reason) from squeue (jobs the controller still knows), else
    sacct (where accounting is on)."""
    out: dict[int, tuple[str, str]] = {}
    try:
        done = subprocess.run(["squeue", "-h", "-r", "-j", job_id, "--states=all",
                               "-o", "%i|%T|%N|%r"], capture_output=True, text=True, timeout=60)
        rows = done.stdout.splitlines() if done.returncode == 0 else []
        for row in rows:
            jid, state, node, reason = (row.split("|") + ["", "", "", ""])[:4]
            task = int(jid.split("_")[1]) if "_" in jid and jid.split("_")[1].isdigit() else 0
            waiting = state in PENDING and reason not in ("None", "")
            out[task] = (state, reason if waiting else node)
        if out or shutil.which("sacct") is None:
            return out
        done = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id,
                               "-o", "JobID,State,NodeList"], capture_output=True, text=True,
                              timeout=60)
        for row in done.stdout.splitlines() if done.returncode == 0 else []:
            jid, state, node = (row.split("|") + ["", "", ""])[:3]
            task = int(jid.split("_")[1]) if "_" in jid and jid.split("_")[1].isdigit() else 0
            out[task] = (state.split()[0] if state else "UNKNOWN", node)
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def _submitit_state(record: dict[str, Any], task: int) -> str:
    """What submitit's files say of a task SLURM has forgotten: COMPLETED, FAILED or UNKNOWN."""
    import pickle

    from submitit.core.utils import JobPaths

    job = f"{record['job_id']}_{task}" if record["n_tasks"] > 1 else record["job_id"]
    result = JobPaths(record["log_dir"], job_id=job, task_id=0).result_pickle
    try:
        with open(result, "rb") as fh:
            outcome = pickle.load(fh)  # noqa: S301 - written by our own task
    except (OSError, EOFError, pickle.UnpicklingError):
        return "UNKNOWN"
    return "COMPLETED" if outcome and outcome[0] == "success" else "FAILED"


def task_states(records: list[dict[str, Any]]) -> list[TaskState]:
    """Every task of the recorded submissions, with its state and log files."""
    out = []
    for record in records:
        known = _scheduler_states(record["job_id"])
        for task in range(record["n_tasks"]):
            state, where = known.get(task) or (_submitit_state(record, task), "")
            stdout, stderr = _log_paths(record, task)
            out.append(TaskState(record["job_id"], task, state, where, stdout, stderr,
                                 array=record["n_tasks"] > 1))
    return out


def log_tail(path: Path, n_lines: int = 3) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if line.strip()][-n_lines:]


def jobs_table(tasks: list[TaskState]):
    """The study's SLURM tasks, the way ``harness status`` shows them."""
    from rich.table import Table

    counts: dict[str, int] = {}
    for t in tasks:
        counts[t.kind] = counts.get(t.kind, 0) + 1
    order = ("pending", "running", "done", "failed", "unknown")
    summary = ", ".join(f"{counts[k]} {k}" for k in order if k in counts)
    table = Table(title=f"SLURM: {len(tasks)} tasks ({summary})", title_justify="left")
    for column in ("task", "state", "node / reason"):
        table.add_column(column)
    table.add_column("log", overflow="fold")
    colours = {"done": "green", "running": "cyan", "failed": "red"}
    for t in tasks:
        colour = colours.get(t.kind)
        state = f"[{colour}]{t.state}[/{colour}]" if colour else t.state
        table.add_row(t.name, state, t.where, str(t.err if t.kind == "failed" else t.out))
    return table


def failed_lines(tasks: list[TaskState]) -> list[str]:
    """For each failed task, the command that shows its log's tail, and its last line."""
    lines = []
    for t in tasks:
        if t.kind != "failed":
            continue
        last = log_tail(t.err, 1)
        lines.append(f"task {t.name} {t.state}: tail -n 40 {t.err}"
                     + (f"   (last line: {last[0].strip()[:160]})" if last else ""))
    return lines


# ---------------------------------------------------------------------------------------------
# Following a launch (--wait)


def follow_run(study: Study, *, tracker, storage_url: str, submission: Submission,
               display: Display, say: Callable[[str], None], data_root: Path | None = None,
               poll_s: float = 5.0) -> tuple[bool, list[str]]:
    """Follow the study until every trial ended or every task did: trials through the
    ``display`` a local run uses, tasks' states and an adaptive study's rounds through ``say``.
    Whether it completed without a failed trial, and the lines to print after."""
    from harness.design.grid import expand
    from harness.study.options import default_data_root
    from harness.study.storage import open_storage

    record = submission.record()
    root = str(Path(data_root or default_data_root()).absolute())  # as launch_run gave it
    specs = {s.trial_key: s for s in expand(study, data_root=root)}
    adaptive = study.adaptive is not None
    storage = open_storage(storage_url)
    reported = _start_following(study, tracker=tracker, root=root, n_trials=len(specs),
                                display=display, say=say)
    seen: dict[str, str] = {}
    n_rounds = -1
    complete = failed = False
    try:
        while True:
            tasks = task_states([record])
            _say_changes(tasks, seen, say)
            failed |= _report_trials(study, tracker=tracker, storage=storage, specs=specs,
                                     root=root, reported=reported, display=display, say=say)
            if adaptive:
                n_rounds, complete = _follow_rounds(tracker, n_rounds, say)
            else:
                complete = len(reported) == len(specs)
            if complete or all(t.ended for t in tasks):
                break
            time.sleep(poll_s)
    finally:
        display.study_ended()
    lines = failed_lines(tasks)
    if not complete:
        lines.insert(0, f"every task of SLURM job {submission.job_id} ended before the study"
                        " did; harness status shows what is left (launch again to go on)")
    return complete and not failed, lines


def _start_following(study: Study, *, tracker, root: str, n_trials: int, display: Display,
                     say: Callable[[str], None]) -> set[str]:
    """Announce what is followed; the keys of the trials finished before it starts."""
    from harness.study.status import study_status

    first = study_status(study, tracker=tracker, data_root=root)
    reported = {t.trial_key for t in first.trials if t.state == "FINISHED"}
    if study.adaptive is not None:  # its rounds decide how many trials there will be
        say(f"{study.name}: adaptive seeds; following its rounds")
    else:
        display.study_started(study, n_todo=n_trials - len(reported),
                              n_skipped=len(reported))
    return reported


def _report_trials(study: Study, *, tracker, storage, specs: dict[str, Any], root: str,
                   reported: set[str], display: Display, say: Callable[[str], None]) -> bool:
    """Report each trial that ended since the last poll (adding it to ``reported``); whether
    one of them failed."""
    from harness.study.executors import TrialOutcome
    from harness.study.queue import WorkQueue
    from harness.study.status import study_status

    failed = False
    queue = WorkQueue.find(storage, study_name=study.name, all_keys=list(specs))
    for row in study_status(study, tracker=tracker, queue=queue, data_root=root).trials:
        if row.trial_key in reported or row.state not in ("FINISHED", "FAILED"):
            continue
        reported.add(row.trial_key)
        failed |= row.state == "FAILED"
        if study.adaptive is not None:
            say(f"{row.state.lower()}: {row.cell} seed={row.seed}")
        else:
            display.trial_ended(TrialOutcome(specs[row.trial_key], row.state,
                                             error="its run in MLflow has the traceback"))
    return failed


def _follow_rounds(tracker, n_rounds: int, say: Callable[[str], None]) -> tuple[int, bool]:
    """Say each round of an adaptive study decided since the last poll; the number of rounds
    now, and whether its plan is finished."""
    from harness.study.adaptive import load_state

    with _environment(QUIET_DOWNLOADS):
        state = load_state(tracker)
    if state is not None and len(state.rounds) != n_rounds:
        if n_rounds >= 0:
            say(f"round {len(state.rounds)} decided: {len(state.open())} of"
                f" {len(state.plan['family'])} comparisons still open")
        n_rounds = len(state.rounds)
    return n_rounds, state is not None and state.finished


def _say_changes(tasks: list[TaskState], seen: dict[str, str],
                 say: Callable[[str], None]) -> None:
    for t in tasks:
        if seen.get(t.name) != t.state:
            seen[t.name] = t.state
            say(f"task {t.name}: {t.state}{f' ({t.where})' if t.where else ''}")


def follow_tune(study: Study, *, storage_url: str, submission: Submission, n_new: int,
                say: Callable[[str], None], poll_s: float = 5.0):
    """Follow the search until every task ended, saying task states and trial counts; the
    lines to print after (failed tasks) and the search's outcome."""
    import optuna

    from harness.study.storage import open_storage
    from harness.study.tune import search_outcome

    record = submission.record()
    storage = open_storage(storage_url)
    seen: dict[str, str] = {}
    last = ""
    while True:
        tasks = task_states([record])
        _say_changes(tasks, seen, say)
        search = optuna.load_study(study_name=study.name, storage=storage)
        trials = search.get_trials(deepcopy=False)
        counts: dict[str, int] = {}
        for trial in trials:
            counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
        line = f"{study.name}: {len(trials)} trials" + (" (" + ", ".join(
            f"{n} {s}" for s, n in sorted(counts.items())) + ")" if counts else "")
        if line != last:
            say(line)
            last = line
        if all(t.ended for t in tasks):
            return failed_lines(tasks), search_outcome(search, n_new=n_new)
        time.sleep(poll_s)
