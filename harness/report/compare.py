"""``harness compare A B``: did a refactor, a library upgrade or a move to a GPU move the results?

Two studies share a cell when they trained the same configuration (the same ``cell_key``: the
resolved config without the seed, whatever the studies are called).  For each shared cell and
each metric the difference B - A is estimated over seeds, the seed again the unit:

- *paired* over the seeds both ran (same seed, same data order and initial weights), a one-sample
  t-test of the per-seed differences; every difference exactly zero is *identical*;
- *Welch* over the two sets of seeds when fewer than two seeds are shared.

Holm's adjustment runs over the family of every cell and metric, for the difference tests and
for the equivalence tests alike (``--alpha``).  A verdict is *different* (B - A is not zero),
*equivalent* within ``--margin`` (two one-sided tests, the margin in each metric's own units),
*identical* (paired, every seed's value equal to the last bit) or *undecided*.  The provenance
the two studies' trials recorded (code version, torch, device, precision, threads) is set side
by side where it differs: it is what explains a difference the configuration does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.report import stats
from harness.report.collect import StoredStudy, StudyRuns, collect
from harness.report.command import PER_EPOCH, open_store, resolve_study, store_errors
from harness.report.units import Units, p_text

if TYPE_CHECKING:
    from rich.console import Console

IDENTICAL, EQUIVALENT, DIFFERENT, UNDECIDED = "identical", "equivalent", "different", "undecided"
# Final metrics a configuration fixes or that count, not measure: nothing to compare.
_NOT_COMPARED = ("n_params", "best_epoch", "epochs_run")


@dataclass
class CellDifference:
    """One metric of one shared cell: B - A over seeds, tested and decided."""

    cell: str  # the cell's levels in words, as study A labels them
    cell_key: str
    metric: str
    test: str  # paired, welch, none
    n_a: int
    n_b: int
    n_pairs: int  # seeds both studies ran (the units of a paired test)
    diff: float  # mean of B - A
    ci_low: float
    ci_high: float
    df: float
    p: float
    p_equivalence: float = math.nan
    p_holm: float = math.nan
    p_equivalence_holm: float = math.nan
    verdict: str = UNDECIDED
    note: str = ""


@dataclass
class StudyComparison:
    study_a: str
    study_b: str
    metrics: list[str]
    margin: float | None
    alpha: float
    rows: list[CellDifference]
    n_cells_a: int
    n_cells_b: int
    # Provenance field → (A's values, B's values), where they differ.
    provenance: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def n_shared(self) -> int:
        return len({r.cell_key for r in self.rows})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([vars(r) for r in self.rows])


def _cell_label(row: pd.Series, factors: list[str]) -> str:
    return ", ".join(f"{f}={row[f]}" for f in factors) or "base"


def _difference(a: pd.DataFrame, b: pd.DataFrame, *, metric: str,
                margin: float | None, alpha: float) -> dict:
    """B - A of ``metric`` for one cell: paired over shared seeds, else Welch."""
    va = a.dropna(subset=[metric]).groupby("seed")[metric].mean()
    vb = b.dropna(subset=[metric]).groupby("seed")[metric].mean()
    shared = sorted(set(va.index) & set(vb.index))
    out = {"n_a": len(va), "n_b": len(vb), "n_pairs": len(shared), "note": ""}
    if len(shared) >= 2:
        d = vb.loc[shared].to_numpy(float) - va.loc[shared].to_numpy(float)
        test, kind = stats.one_sample(d), "paired"
        if len(shared) < max(len(va), len(vb)):
            out["note"] = (f"{len(va) + len(vb) - 2 * len(shared)} seeds run by one study"
                           " only are left out of the paired test")
        identical = bool(np.all(d == 0))
    elif len(va) and len(vb):
        test, kind = stats.welch(vb.to_numpy(float), va.to_numpy(float)), "welch"
        identical = False
        if len(va) < 2 or len(vb) < 2:
            out["note"] = "fewer than two seeds on a side: nothing can be decided"
    else:
        return {**out, "test": "none", "diff": math.nan, "ci_low": math.nan,
                "ci_high": math.nan, "df": math.nan, "p": math.nan,
                "note": f"no {metric} value on a side"}
    out.update(test=kind, diff=test.estimate, ci_low=test.ci_low, ci_high=test.ci_high,
               df=test.df, p=test.p)
    if margin:
        out["p_equivalence"] = stats.tost(test, margin, alpha=alpha).p
    out["identical"] = identical
    return out


def _decide(rows: list[CellDifference], identical: list[bool], *, alpha: float) -> None:
    """Holm over the family (every cell and metric), then each row's verdict."""
    for name, holm_name in (("p", "p_holm"), ("p_equivalence", "p_equivalence_holm")):
        p = np.array([getattr(r, name) for r in rows], dtype=float)
        adjusted = stats.holm(p)
        for r, q in zip(rows, adjusted):
            setattr(r, holm_name, float(q))
    for r, same in zip(rows, identical):
        if same:
            r.verdict = IDENTICAL
        elif r.p_holm <= alpha:
            r.verdict = DIFFERENT
        elif r.p_equivalence_holm <= alpha:
            r.verdict = EQUIVALENT
        else:
            r.verdict = UNDECIDED


def _provenance(a: StudyRuns, b: StudyRuns) -> dict[str, tuple[str, str]]:
    out = {}
    for name in a.provenance.columns if a.provenance is not None else []:
        values = [", ".join(sorted(set(r.provenance[name].dropna().astype(str))) or ["?"])
                  if r.provenance is not None and name in r.provenance else "?" for r in (a, b)]
        if values[0] != values[1]:
            out[name] = (values[0], values[1])
    return out


def _default_metrics(a: StudyRuns, b: StudyRuns) -> list[str]:
    both = [m for m in a.metrics if m in b.metrics]
    return [m for m in both if m not in PER_EPOCH and m not in _NOT_COMPARED
            and not m.startswith(("system/", "test_class_acc.")) and "time" not in m]


def compare_studies(client, a: StoredStudy, b: StoredStudy, *, uri: str,
                    metrics: list[str] | None = None, margin: float | None = None,
                    alpha: float = 0.05) -> StudyComparison:
    """Every metric of every cell the two stored studies share, B - A."""
    if margin is not None and not (math.isfinite(margin) and margin > 0):
        raise HarnessError(f"--margin {margin:g}: must be a number > 0 in the metric's own"
                           " units (0.005 is 0.5 pp of accuracy)")
    if not 0 < alpha < 1:
        raise HarnessError(f"--alpha {alpha}: must be between 0 and 1, e.g. 0.05")
    with store_errors(uri):
        runs = [collect(client, s) for s in (a, b)]
    for r in runs:
        if r.trials.empty:
            raise HarnessError(f"study {r.study.name} has no finished trials; run it first"
                               f" (harness run <{r.study.name}.yaml>)")
    ra, rb = runs
    chosen = list(dict.fromkeys(metrics)) if metrics else _default_metrics(ra, rb)
    for m in chosen:
        missing = [r.study.name for r in runs if m not in r.trials]
        if missing:
            raise HarnessError(
                f"--metric {m}: not logged by the finished trials of study {missing[0]};"
                f" both log: {', '.join(_default_metrics(ra, rb)) or 'no final metric'}")
    if not chosen:
        raise HarnessError(f"studies {a.name} and {b.name} log no final metric in common;"
                           " name one with --metric")
    cells_a, cells_b = set(ra.trials["cell_key"]), set(rb.trials["cell_key"])
    shared = [k for k in dict.fromkeys(ra.trials["cell_key"]) if k in cells_b]
    if not shared:
        raise HarnessError(
            f"studies {a.name} and {b.name} share no cell ({len(cells_a)} and {len(cells_b)}"
            " cells): a cell is a trial's resolved config without its seed, so the two must"
            " have trained at least one same configuration")
    rows, identical = [], []
    for key in shared:
        ta = ra.trials[ra.trials["cell_key"] == key]
        tb = rb.trials[rb.trials["cell_key"] == key]
        label = _cell_label(ta.iloc[0], ra.factors)
        for m in chosen:
            found = _difference(ta, tb, metric=m, margin=margin, alpha=alpha)
            identical.append(found.pop("identical", False))
            rows.append(CellDifference(cell=label, cell_key=key, metric=m, **found))
    _decide(rows, identical, alpha=alpha)
    return StudyComparison(a.name, b.name, chosen, margin, alpha, rows, len(cells_a),
                           len(cells_b), _provenance(ra, rb))


def _test_words(r: CellDifference) -> str:
    if r.test == "paired":
        return f"paired over {r.n_pairs} seeds"
    if r.test == "welch":
        return f"Welch, {r.n_a}+{r.n_b} seeds"
    return "no test"


def lines(result: StudyComparison) -> tuple[list[str], dict[str, list[list[str]]], list[str]]:
    """The header, each cell's rows (strings, under a title naming the cell and its test) and
    the notes, as the terminal shows them."""
    margin = ("no --margin: verdicts identical / different / undecided" if not result.margin
              else f"equivalence margin ±{result.margin:g} in each metric's own units"
                   " (accuracy: a fraction)")
    head = [f"B - A: {result.study_b} minus {result.study_a}, {result.n_shared} shared cells"
            f" (A has {result.n_cells_a}, B {result.n_cells_b}); the seed is the unit: paired"
            " over the seeds both ran, else Welch",
            f"Holm over the {len(result.rows)} cell x metric comparisons at alpha"
            f" {result.alpha:g}; {margin}"]
    cells: dict[str, list[list[str]]] = {}
    for r in result.rows:
        units = Units.for_metric(r.metric, pd.Series([r.diff]))
        units = units.justified((r.ci_high - r.ci_low) / 2)
        title = f"{r.cell} ({_test_words(r)})"
        cells.setdefault(title, []).append(
            [r.metric, f"{units.diff(r.diff)}{' pp' if units.percent else ''}",
             units.interval(r.ci_low, r.ci_high), p_text(r.p_holm), r.verdict])
    notes = [f"{r.cell} {r.metric}: {r.note}" for r in result.rows if r.note]
    if result.provenance:
        notes += [f"provenance differs: {name}: A {va}; B {vb}"
                  for name, (va, vb) in result.provenance.items()]
    else:
        notes.append("provenance: the same code version, torch, torchvision, device, precision"
                     " and threads in both")
    return head, cells, notes


def compare_command(study_a: str, study_b: str, *, metrics: list[str] | None = None,
                    margin: float | None = None, alpha: float = 0.05,
                    tracking_uri: str | None = None, console: Console) -> StudyComparison:
    """``harness compare A B``: resolve both studies in one store, compare, print."""
    from rich.table import Table

    tracker = open_store(tracking_uri)
    client = tracker.client
    with store_errors(tracker.uri):
        a = resolve_study(client, study_a, uri=tracker.uri)
        b = resolve_study(client, study_b, uri=tracker.uri)
    result = compare_studies(client, a, b, uri=tracker.uri, metrics=metrics, margin=margin,
                             alpha=alpha)
    head, cells, notes = lines(result)
    for line in head:
        console.print(line, markup=False, highlight=False)
    for title, rows in cells.items():
        table = Table("metric", "B - A", "95% CI", "p_holm", "verdict", title=title,
                      title_justify="left")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for note in notes:
        console.print(note, markup=False, highlight=False)
    return result
