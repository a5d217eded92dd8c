"""An adaptive study's plan as data: the family of comparisons it decides, what the plan
commits to (its hash), the rounds decided so far, and which trials a round needs.

The plan is a JSON mapping written to the study's parent run as ``plan/plan.json`` before any
trial runs, with its hash as the tag ``harness.plan_hash``; each decided round is appended to
``plan/rounds.json`` (and the tag ``harness.adaptive.round``).  ``harness.report.adaptive``
computes the plan's statistics (looks, boundaries) and each round's decisions;
``harness.study.adaptive`` runs the rounds; the report follows the plan it finds here.  A new
key of the plan is hashed like the others unless it is named in ``DERIVED`` (what the plan
computes from its settings, such as its boundaries).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.config import Study
from harness.design.grid import parse_levels, resolve_baselines
from harness.design.spec import TrialSpec
from harness.errors import ConfigError

PLAN_FILE, ROUNDS_FILE = "plan/plan.json", "plan/rounds.json"
PLAN_HASH, ROUND_TAG = "harness.plan_hash", "harness.adaptive.round"
# 1: z boundaries read as t levels (recorded before issue 25; still followed as recorded).
# 2: boundaries calibrated for the studentised t-process (``sequential.t_boundaries``).
PLAN_VERSION = 2
# What a plan derives from the committed settings: recorded, not hashed, so a study resumed on
# another machine (another numpy) keeps its plan; the hash commits to how they are computed.
DERIVED = ("code_version", "t_boundaries", "nominal_levels")
# The settings a plan of any version commits to, compared when a study resumes.
SETTINGS = ("study", "metric", "higher_is_better", "alpha", "alpha_per_comparison", "margin",
            "baseline", "family", "seeds", "looks", "cells")
# A comparison still open (the report's verdict of the same name).
UNDECIDED = "undecided"


@dataclass(frozen=True)
class Planned:
    """One comparison of the family: ``level`` of ``factor`` against ``baseline``."""

    factor: str
    level: str
    baseline: str

    @property
    def id(self) -> str:
        return f"{self.factor}: {self.level} vs {self.baseline}"


def levels_of(study: Study) -> dict[str, list[str]]:
    """Each grid axis's level labels, in the grid's order."""
    return {axis: [lv.label for lv in parse_levels(axis, values, source=study.source)]
            for axis, values in (study.grid or {}).items()}


def check_adaptive(study: Study) -> None:
    """What an adaptive study needs beyond its own keys: a factorial grid to compare."""
    if study.adaptive is None:
        return
    if study.design != "factorial":
        raise ConfigError(f"{study.source}: seeds: adaptive seeds need design: factorial"
                          f" (got {study.design}); give a list of seeds instead")
    if not study.grid:
        raise ConfigError(f"{study.source}: seeds: adaptive seeds decide comparisons between"
                          " grid levels; this study has no grid (add one, or list the seeds)")
    for axis, labels in levels_of(study).items():
        if len(labels) < 2:
            raise ConfigError(f"{study.source}: grid.{axis}: one level ({labels[0]}); adaptive"
                              " seeds compare levels, so each axis needs two or more")


def family(study: Study) -> tuple[dict[str, list[str]], dict[str, str], list[Planned]]:
    """The factors' levels, their baselines (``report.baseline``, else the first level) and the
    family of comparisons, in grid order."""
    levels = levels_of(study)
    wanted = {key: (value, f"{study.source}: report.baseline.{key}")
              for key, value in study.report.baseline.items()}
    baseline = resolve_baselines(levels, wanted, study_name=study.name)
    comparisons = [Planned(axis, label, baseline[axis])
                   for axis, labels in levels.items() for label in labels
                   if label != baseline[axis]]
    return levels, baseline, comparisons


def cells_digest(specs: list[TrialSpec]) -> dict[str, Any]:
    """What the plan trains: its cells' keys (``harness.design.spec``), counted and hashed,
    so a plan run again on another recipe (another ``data.dataset``, say) is another plan."""
    keys = sorted({spec.cell_key for spec in specs})
    digest = hashlib.sha256(",".join(keys).encode()).hexdigest()[:16]
    return {"n": len(keys), "sha256": digest}


def plan_hash(plan: dict[str, Any]) -> str:
    """What the plan commits to, hashed; the code version is recorded but not hashed, so a
    study resumed by a newer commit keeps its plan, and neither are the boundaries a version-2
    plan derives by its recorded calibration (a version-1 plan hashes as it always did)."""
    derived = ("code_version",) if plan.get("version", 1) == 1 else DERIVED
    committed = {k: v for k, v in plan.items() if k not in derived}
    text = json.dumps(committed, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_settings(recorded: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """What ``plan`` (the study's as it is now) changes of the ``recorded`` one; empty when the
    study may resume under it.  A plan recorded by an older version is followed as recorded
    (its boundaries are what it pre-registered): only the settings must still match.  A plan
    recorded before plans committed to their cells (no ``cells``) is not held to them."""
    if "cells" not in recorded:
        plan = {k: v for k, v in plan.items() if k != "cells"}
    if recorded.get("version", 1) != plan["version"]:
        return [k for k in SETTINGS if k in plan and plan[k] != recorded.get(k)]
    if plan_hash(recorded) == plan_hash(plan):
        return []
    keys = dict.fromkeys([*recorded, *plan])
    return [k for k in keys if k not in DERIVED and plan.get(k) != recorded.get(k)]


def comparisons_of(plan: dict[str, Any]) -> list[Planned]:
    return [Planned(c["factor"], c["level"], c["baseline"]) for c in plan["family"]]


@dataclass
class PlanState:
    """The plan and the rounds decided so far."""

    plan: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def decided(self) -> dict[str, dict[str, Any]]:
        """Comparison id → the round record that decided it (or ended it undecided)."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.rounds:
            for cid, record in r["decisions"].items():
                if record["verdict"] != UNDECIDED or record.get("final"):
                    out.setdefault(cid, record)
        return out

    @property
    def latest(self) -> dict[str, dict[str, Any]]:
        """Comparison id → its latest record, decided or not."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.rounds:
            out.update(r["decisions"])
        return {**out, **self.decided}

    def open(self) -> list[Planned]:
        decided = self.decided
        return [c for c in comparisons_of(self.plan) if c.id not in decided]

    @property
    def next_look(self) -> int:
        return len(self.rounds)

    @property
    def finished(self) -> bool:
        return not self.open() or self.next_look >= len(self.plan["looks"])


def read_state(read: Callable[[str], str | None]) -> PlanState | None:
    """The plan and its rounds from a reader of the parent run's files; None without a plan."""
    text = read(PLAN_FILE)
    if text is None:
        return None
    rounds = read(ROUNDS_FILE)
    return PlanState(json.loads(text), json.loads(rounds) if rounds else [])


def round_study(study: Study, state: PlanState, n_seeds: int) -> Study:
    """The trials round ``n_seeds`` needs: the needed levels' grid at seeds 0 .. n - 1.

    A level of a factor is needed while a comparison of that factor with the level (or its
    baseline) is undecided, and every level of a factor is needed while a comparison of another
    factor is undecided (that comparison averages each seed over this factor's levels), so a
    round stays a complete factorial per seed.
    """
    open_ = state.open()
    open_factors = {c.factor for c in open_}
    grid = {}
    for axis, values in (study.grid or {}).items():
        labels = [lv.label for lv in parse_levels(axis, values, source=study.source)]
        if open_factors - {axis}:
            keep = set(labels)  # another factor's comparison averages over this one
        else:
            keep = {x for c in open_ if c.factor == axis for x in (c.level, c.baseline)}
        grid[axis] = [v for v, label in zip(values, labels) if label in keep]
    return study.model_copy(update={"seeds": list(range(n_seeds)), "grid": grid})
