"""``harness rerun RUN_ID``: one trial trained again from its recorded config and seed, and
whether it reproduced.

The new run sits beside the original, under the same study's parent run, tagged
``harness.rerun_of=<original run id>`` and ``harness.kind=rerun`` (so the study's report keeps
counting the original, not a second copy of the trial).  It trains as the original did where
this machine allows: the recorded seed and config, the recorded device type and, on the CPU,
the recorded torch thread count (``device`` and ``threads`` choose others).

Then every metric the original logged is compared, timings and system metrics aside: either
all are identical to the last bit, or the differences per metric are listed with the
conditions README's promise of bit-for-bit repeats names (device type, precision, threads,
torch and torchvision versions, code version, the data path) that differ between the runs;
where none differs, the verdict says so: something in the trial is not deterministic.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.study.runner import dataset_loader, preflight, run_trial
from harness.design.spec import TrialSpec
from harness.study.workers import restores_threads
from harness.tracking import DATA_PATH, FACTOR_PREFIX, KIND, PROVENANCE, SEED, STUDY_TAG
from harness.tracking import MlflowTracker

RERUN_OF, REPRODUCED = "harness.rerun_of", "harness.reproduced"
# What the promise covers, by name as ``harness report`` names it, and the tag holding it.
CONDITIONS = {**PROVENANCE, "data path": DATA_PATH}
# Metrics that measure the machine, not the trial: never expected to repeat.
_TIMING_WORDS = ("time", "per_s", "seconds")


@dataclass(frozen=True)
class MetricDifference:
    metric: str
    original: float
    rerun: float

    @property
    def delta(self) -> float:
        return self.rerun - self.original


@dataclass
class RerunOutcome:
    original_run_id: str
    run_id: str
    status: str  # the rerun's: FINISHED, FAILED, …
    n_compared: int = 0
    differences: list[MetricDifference] = field(default_factory=list)
    # Condition name → (original, rerun), only those that differ.
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    error: str = ""

    @property
    def reproduced(self) -> bool:
        return self.status == "FINISHED" and not self.differences

    def lines(self) -> list[str]:
        """What happened, in words: the verdict first, then the differences."""
        if self.status != "FINISHED":
            return [f"rerun {self.run_id} of {self.original_run_id} ended {self.status}:"
                    f" {self.error}"]
        differ = "; ".join(f"{k} {a} -> {b}" for k, (a, b) in self.conditions.items())
        if self.reproduced:
            same = (" (same device type, precision, threads, versions, code and data path)"
                    if not differ else f", although conditions differ: {differ}")
            return [f"reproduced bit for bit: all {self.n_compared} metrics of run"
                    f" {self.original_run_id} identical in rerun {self.run_id}{same}"]
        head = (f"not reproduced: {len(self.differences)} of {self.n_compared} metrics differ"
                f" in rerun {self.run_id} from run {self.original_run_id}")
        why = (f"conditions that differ: {differ}" if differ else
               "every condition of the promise is the same (device type, precision, threads,"
               " versions, code, data path): something in this trial is not deterministic"
               " (on a GPU: train.deterministic: true)")
        return [head, why, *(f"  {d.metric}: {d.original!r} -> {d.rerun!r} ({d.delta:+.6g})"
                             for d in self.differences)]


def _conditions(tags: dict[str, str]) -> dict[str, str]:
    found = {name: tags.get(tag, "") for name, tag in CONDITIONS.items()}
    # The promise is about the device type: cuda:0 and cuda:1 are the same kind of device.
    found["device"] = found["device"].split(":")[0]
    return found


def _compared(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items()
            if not k.startswith("system/") and not any(w in k for w in _TIMING_WORDS)}


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


@restores_threads
def rerun(run_id: str, *, tracking_uri: str | None = None, device: str | None = None,
          threads: int | None = None, data_root: Path, work_root: Path | None = None
          ) -> RerunOutcome:
    """Train trial run ``run_id`` again into a new run and compare the two."""
    import torch

    from harness.viz.from_run import recorded_trial

    _, run, config = recorded_trial(run_id, tracking_uri=tracking_uri)
    tags = run.data.tags
    parent = tags.get("mlflow.parentRunId")
    if parent is None or SEED not in tags:
        raise HarnessError(f"run {run_id}: a trial run without its parent or seed tag; only"
                           " runs recorded by harness run can be rerun")
    factors = {k.removeprefix(FACTOR_PREFIX): v for k, v in tags.items()
               if k.startswith(FACTOR_PREFIX)}
    spec = TrialSpec(tags.get(STUDY_TAG, ""), config, int(tags[SEED]), factors)
    recorded = _conditions(tags)

    if threads is None and recorded["threads"].isdigit():
        threads = min(int(recorded["threads"]), os.cpu_count() or 1)
    if threads is not None:
        if threads < 1:
            raise HarnessError(f"--threads {threads}: must be 1 or more")
        torch.set_num_threads(threads)
    load = dataset_loader(data_root)
    resolved = preflight([spec], data_root=data_root, device=device or recorded["device"] or "auto",
                         load=load)

    tracker = MlflowTracker(tracking_uri)
    tracker.experiment_id, tracker.parent_run_id = run.info.experiment_id, parent
    with tempfile.TemporaryDirectory(prefix="harness-rerun-") as tmp:
        result = run_trial(spec, tracker=tracker, load=load, device=resolved,
                           tags={KIND: "rerun", RERUN_OF: run_id},
                           work_root=work_root or Path(tmp),
                           # Runs of this trial still RUNNING are another process's: leave them.
                           alive=lambda _tags: True)
    outcome = RerunOutcome(run_id, result.run_id or "", result.status, error=result.error or "")
    if result.status != "FINISHED":
        return outcome
    client = tracker.client
    again = client.get_run(outcome.run_id)
    before, after = _compared(run.data.metrics), _compared(again.data.metrics)
    outcome.n_compared = len(before)
    outcome.differences = [MetricDifference(k, v, after.get(k, math.nan))
                           for k, v in sorted(before.items())
                           if not _same(v, after.get(k, math.nan))]
    now = _conditions(again.data.tags)
    outcome.conditions = {k: (recorded[k], now[k]) for k in recorded if recorded[k] != now[k]}
    client.set_tag(outcome.run_id, REPRODUCED,
                   "bit for bit" if outcome.reproduced else
                   f"no: {len(outcome.differences)} metrics differ")
    return outcome
