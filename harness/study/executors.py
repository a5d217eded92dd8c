"""Executors decide where trials run; they share one contract.

An executor receives the trials still to run and a function that runs one trial end to end
(tracking included) and yields the outcomes as they complete.  This one runs them in the
calling process, one after another.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from harness.study.spec import TrialSpec


@dataclass
class TrialOutcome:
    spec: TrialSpec
    status: str  # FINISHED | FAILED | PRUNED
    final: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    pruned_epoch: int | None = None
    run_id: str | None = None  # the tracker's id of the trial's run, where it has one


class Executor(ABC):
    @abstractmethod
    def map(
        self, specs: list[TrialSpec], run_one: Callable[[TrialSpec], TrialOutcome]
    ) -> Iterator[TrialOutcome]: ...


class InProcessExecutor(Executor):
    def map(
        self, specs: list[TrialSpec], run_one: Callable[[TrialSpec], TrialOutcome]
    ) -> Iterator[TrialOutcome]:
        for spec in specs:
            yield run_one(spec)
