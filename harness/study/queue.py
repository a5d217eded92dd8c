"""The study's trials as a work queue in an Optuna RDB storage, for workers in several
processes or on several machines.

Optuna already solves the hard parts of a shared queue: a WAITING trial becomes RUNNING for
exactly one worker (``Study.ask`` pops it under a row lock), workers record heartbeats, and
``fail_stale_trials`` turns a silent worker's trial FAIL and, through
``RetryFailedTrialCallback``, puts a copy back in the queue.  This module only maps trial keys
onto that: each queued Optuna trial carries its ``trial_key`` as a user attribute.

Without a shared storage (no ``--storage``) a study runs from one process on a store, with
the local workers it starts (``--workers``): ``run_alone`` refuses a second process, which
would otherwise take the first's running trials for a dead process's.

Queues come in generations named ``<study>:<grid digest>:<n>``.  The first worker to create a
generation (creation is atomic: study names are unique) enqueues every trial key that is not
FINISHED in the tracking store; later workers join it while it still has waiting or running
trials, and start the next generation once it is spent (after failures, or when seeds were
added), so re-running a study re-runs exactly what is missing.

Heartbeats: the generation's creator records its heartbeat interval in the generation, and
every worker that joins beats at that interval and calls a trial stale after three silent
beats, whatever its own ``--heartbeat`` says (one impatient worker must not declare everyone
else dead).  A worker beats the moment it claims a trial, and a RUNNING trial that never beat
(its worker died between claiming and beating) goes stale after the same grace, so no trial
holds the queue forever.  A worker that only looked dead (frozen: a VM pause, swap) finds on
waking that its trial went to another worker (``owns``) and stops it without touching it.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import hashlib
import os
import re
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.study.storage import default_storage, open_storage
from harness.tracking.credentials import without_userinfo
from harness.tracking.provenance import worker_name

ENQUEUED = "harness.enqueued"
HOST = "harness.host"
BEAT = "harness.heartbeat_at"
HEARTBEAT_S = "harness.heartbeat_s"  # the generation's heartbeat interval, set by its creator
BEATS_TO_STALE = 3


def queue_prefix(study_name: str, trial_keys: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(trial_keys)).encode()).hexdigest()[:12]
    return f"{study_name}:{digest}"


def _generations(storage: Any, prefix: str) -> list[tuple[int, str]]:
    """The queue's generations in this storage, oldest first: (number, Optuna study name)."""
    import optuna

    return sorted(
        (int(s.study_name.rsplit(":", 1)[1]), s.study_name)
        for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)
        if s.study_name.startswith(prefix + ":")
    )


@dataclass
class Claim:
    trial: Any  # optuna.Trial
    trial_key: str


class WorkQueue:
    def __init__(self, study: Any, storage: Any, *, heartbeat_s: float) -> None:
        self.study, self.storage, self.heartbeat_s = study, storage, heartbeat_s
        self._adopt_heartbeat()

    def _adopt_heartbeat(self) -> None:
        """Beat, and judge others' beats, at the interval the generation records."""
        recorded = self.study.user_attrs.get(HEARTBEAT_S)
        if recorded is not None:
            self.heartbeat_s = float(recorded)
        # Optuna's fail_stale_trials reads these two from the storage this queue was opened on.
        self.storage.heartbeat_interval = max(1, round(self.heartbeat_s))
        self.storage.grace_period = self.grace_s

    @property
    def grace_s(self) -> int:
        """Seconds without a beat after which a RUNNING trial is stale (whole seconds: Optuna's)."""
        return max(2, round(BEATS_TO_STALE * self.heartbeat_s))

    # -- joining ------------------------------------------------------------------------------

    @classmethod
    def join(
        cls,
        storage: Any,
        *,
        study_name: str,
        all_keys: list[str],
        pending_keys: list[str],
        heartbeat_s: float,
        wait_s: float = 60.0,
    ) -> WorkQueue:
        """The current generation if it still has work, else a new one holding ``pending_keys``."""
        import optuna

        prefix = queue_prefix(study_name, all_keys)
        generations = _generations(storage, prefix)
        if generations:
            latest = optuna.load_study(study_name=generations[-1][1], storage=storage,
                                       sampler=optuna.samplers.RandomSampler())
            queue = cls(latest, storage, heartbeat_s=heartbeat_s)
            queue._wait_until_enqueued(wait_s)
            if queue.has_work() or not pending_keys:
                return queue
        number = generations[-1][0] + 1 if generations else 0
        name = f"{prefix}:{number}"
        try:
            created = optuna.create_study(study_name=name, storage=storage,
                                          sampler=optuna.samplers.RandomSampler())
        except optuna.exceptions.DuplicatedStudyError:
            # Another worker created this generation a moment ago: join it.
            joined = cls(optuna.load_study(study_name=name, storage=storage,
                                           sampler=optuna.samplers.RandomSampler()),
                         storage, heartbeat_s=heartbeat_s)
            joined._wait_until_enqueued(wait_s)
            return joined
        created.set_user_attr(HEARTBEAT_S, heartbeat_s)
        for key in pending_keys:
            created.enqueue_trial({}, user_attrs={"trial_key": key})
        created.set_user_attr(ENQUEUED, len(pending_keys))
        return cls(created, storage, heartbeat_s=heartbeat_s)

    def _wait_until_enqueued(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while ENQUEUED not in self.study.user_attrs:
            if time.monotonic() > deadline:
                raise HarnessError(
                    f"work queue {self.study.study_name}: its creator never finished enqueueing;"
                    " delete that Optuna study (optuna delete-study) and start again"
                )
            time.sleep(0.5)
        self._adopt_heartbeat()

    @classmethod
    def find(cls, storage: Any, *, study_name: str, all_keys: list[str]) -> WorkQueue | None:
        """The latest generation of this study's queue, without creating one."""
        import optuna

        names = _generations(storage, queue_prefix(study_name, all_keys))
        if not names:
            return None
        return cls(optuna.load_study(study_name=names[-1][1], storage=storage), storage,
                   heartbeat_s=storage.heartbeat_interval or 30)

    # -- working ------------------------------------------------------------------------------

    def _trials(self, *states):
        return self.study.get_trials(deepcopy=False, states=states)

    def has_work(self) -> bool:
        from optuna.trial import TrialState

        return bool(self._trials(TrialState.WAITING, TrialState.RUNNING))

    def claim(self) -> Claim | None:
        """The next waiting trial for this worker, or None when none is waiting."""
        from optuna.trial import TrialState

        self.fail_stale()
        while self._trials(TrialState.WAITING):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                trial = self.study.ask()
            # At once: a RUNNING trial without a beat would be stale only after the grace.
            self.storage.record_heartbeat(trial._trial_id)
            key = trial.user_attrs.get("trial_key")
            if key is None:
                # Another worker took the last waiting trial between our look and our ask,
                # so ask() made a fresh one: give it back as failed and look again.
                self.study.tell(trial, state=TrialState.FAIL)
                continue
            trial.set_user_attr(HOST, worker_name())
            trial.set_user_attr(BEAT, time.time())
            return Claim(trial, key)
        return None

    def fail_stale(self) -> None:
        """Fail the trials whose worker fell silent, and put a copy of each back in the queue:
        those that beat but not for three beats (Optuna's heartbeats), and those claimed
        longer ago than that which never beat (their worker died between claim and beat)."""
        import optuna
        from optuna.trial import TrialState

        with warnings.catch_warnings():
            # Optuna calls fail_stale_trials "experimental" and expects heartbeats only from
            # Study.optimize; this queue beats for its trials itself (see heartbeat()).
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(self.study)
        now = datetime.datetime.now()
        for trial in self._trials(TrialState.RUNNING):
            # BEAT is set just after the first heartbeat: without it, the worker may have
            # died before beating, and after the grace it surely did.
            started = trial.datetime_start
            if BEAT in trial.user_attrs or started is None:
                continue
            if (now - started).total_seconds() <= self.grace_s:
                continue
            try:
                if not self.storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker failed it first
            retry = self.storage.get_heartbeat_stale_trial_callback()
            if retry is not None:
                retry(self.study, copy.deepcopy(self.storage.get_trial(trial._trial_id)))

    def owns(self, claim: Claim) -> bool:
        """Whether ``claim``'s trial is still this worker's: False once it was failed as stale
        (this worker was silent too long) and so handed to another.  A storage that cannot be
        asked right now (a network blip) is no reason to stop a trial: True."""
        from optuna.trial import TrialState

        try:
            return self.storage.get_trial(claim.trial._trial_id).state == TrialState.RUNNING
        except Exception:  # noqa: BLE001 - the next look decides
            return True

    def wait_for_stragglers(self, poll_s: float) -> bool:
        """Whether any trial is still running elsewhere (sleeping one poll if so): a worker
        that dies leaves its trial to be retried by whoever is still here."""
        from optuna.trial import TrialState

        if self._trials(TrialState.RUNNING):
            time.sleep(poll_s)
            return True
        return False

    def heartbeat(self, claim: Claim) -> threading.Event:
        """Beat for ``claim`` in the background until the returned event is set."""
        stop = threading.Event()
        trial_id = claim.trial._trial_id

        def beat() -> None:
            while not stop.wait(self.heartbeat_s):
                try:
                    self.storage.record_heartbeat(trial_id)
                    self.storage.set_trial_user_attr(trial_id, BEAT, time.time())
                except Exception:  # noqa: BLE001 - a missed beat is retried at the next one
                    pass

        self.storage.record_heartbeat(trial_id)
        threading.Thread(target=beat, name="harness-heartbeat", daemon=True).start()
        return stop

    def finish(self, claim: Claim, *, status: str, value: float | None) -> None:
        """Record how ``claim``'s trial ended, unless it already ended (failed as stale while
        this worker was frozen, and so another worker's now): nothing is left to say."""
        import optuna
        from optuna.trial import TrialState

        if not self.owns(claim):
            return
        try:
            if status == "FINISHED":
                self.study.tell(claim.trial, value if value is not None else 0.0)
            else:
                self.study.tell(claim.trial, state=TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            # Failed as stale between the look and the tell ("Cannot tell a FAIL trial").
            if self.owns(claim):
                raise

    # -- looking ------------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        """One row per queued trial: key, state, worker and heartbeat age."""
        now = time.time()
        rows = []
        for t in self.study.get_trials(deepcopy=False):
            key = t.user_attrs.get("trial_key")
            if key is None:
                continue
            beat = t.user_attrs.get(BEAT)
            rows.append({"trial_key": key, "state": t.state.name, "host": t.user_attrs.get(HOST),
                         "heartbeat_age_s": None if beat is None else now - beat})
        return rows


def claim_once(storage: Any, name: str) -> bool:
    """Whether this process is the first of all to claim ``name``: creating an Optuna study is
    atomic (names are unique), so exactly one process sees True (an adaptive round's decision)."""
    import optuna

    try:
        optuna.create_study(study_name=name, storage=storage)
    except optuna.exceptions.DuplicatedStudyError:
        return False
    return True


@contextlib.contextmanager
def run_alone(study_name: str, tracking_uri: str) -> Iterator[None]:
    """While the block runs, no other process runs this study without a shared storage on the
    same store: a second one stops with one line (a ``HarnessError``) before touching
    anything.  The lock is the operating system's (``flock``) on a file of this user's in the
    temporary folder, so the store itself gets nothing: a process that dies, however it dies,
    releases it."""
    import fcntl
    import tempfile

    from harness.tracking import local_store_paths

    local = local_store_paths(tracking_uri)
    store = str(local[0].resolve()) if local is not None else without_userinfo(tracking_uri)
    folder = Path(tempfile.gettempdir()) / f"harness-{os.getuid()}-running"
    folder.mkdir(mode=0o700, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", study_name)[:80]
    digest = hashlib.sha256(f"{study_name}\n{store}".encode()).hexdigest()[:12]
    path = folder / f"{safe}-{digest}.lock"
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise HarnessError(
                f"study {study_name} is already running on this store ({holder}); wait for it"
                " to end, or stop it and run once with --workers N for more trials at once"
            ) from None
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"process {worker_name()} since {time.strftime('%H:%M:%S')}")
            lock.flush()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def default_queue_storage(tracking_uri: str) -> str:
    """The local queue of ``--workers N``: SQLite beside the local MLflow store."""
    return default_storage(tracking_uri).replace("optuna.db", "queue.db")


def open_queue_storage(url: str, *, heartbeat_s: float):
    """The queue's storage: stale trials are failed and put back for another worker."""
    return open_storage(url, heartbeat_s=heartbeat_s, retry_stale=True)
