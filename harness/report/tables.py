"""The tables and lines every text format draws: the terminal, Markdown and HTML say the same.

A ``Table`` is strings already formatted (``harness.report.units``) with which columns align
right, its notes, and what it shows (``kind``: levels, comparisons, interactions, interaction,
cells; ``key``: the factor), so a format only lays it out. ``header_lines`` say what was
compared and left out, ``legend_lines`` how to read the columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.report.content import ReportContent
from harness.report.units import Units, p_text, seeds_range, verdict_text
from harness.report.verdicts import Comparison, Interaction


# The seeds a comparison needs in all (those run included), estimated from the current ones.
SEEDS_TO_DECIDE = "seeds to decide (in total, est.)"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    right: set[int] = field(default_factory=set)  # right-aligned column indices
    notes: list[str] = field(default_factory=list)
    kind: str = ""  # factor | interaction | cells
    key: str = ""  # the factor, for a factor table


def header_lines(content: ReportContent) -> list[str]:
    """What was compared, from how many trials, and what was left out."""
    r = content.result
    excluded = ", ".join(f"{v} {k}" for k, v in content.excluded.items() if v)
    extra = [f"{content.n_retried} earlier attempts superseded by a finished run"] \
        if content.n_retried else []
    if content.n_outside:
        extra.append(f"{content.n_outside} finished runs of other settings not in this study")
    if content.n_missing:
        extra.append(f"{content.n_missing} trials not run yet")
    lines = [
        f"study {content.study}: {content.metric} ({content.value_kind}),"
        f" {len(content.trials)} finished trials over {content.trials['seed'].nunique()} seeds",
        f"excluded trials: {excluded or 'none'}" + "".join(f"; {e}" for e in extra),
    ]
    if content.significance:
        units = Units.for_metric(content.metric, content.trials[content.metric])
        margin = r.design.margin
        lines.append(
            f"alpha {r.alpha}; one Holm family over the {len(r.comparisons)} level-vs-baseline"
            f" comparisons and {len(r.interactions)} interaction"
            f"{'s' if len(r.interactions) != 1 else ''} (each one's difference"
            f"{' and equivalence' if margin else ''} tests); the seed is the unit of"
            " replication: paired over seeds (each seed's mean over the other factors' cells),"
            " a mixed model with a random slope by seed when cells are missing, Welch over seed"
            " means when the levels share no seed"
        )
        if content.analysis:
            lines.append(content.analysis["line"])
        lines.append(
            f"equivalence margin ±{units.value(margin)}{' pp' if units.percent else ''}"
            f" ({content.margin_source}): verdicts better / worse / equivalent / undecided"
            if margin else
            "no equivalence margin (report.margin or --margin): verdicts better / worse /"
            " undecided; undecided is not evidence of no effect"
        )
    return lines + content.notes + r.notes


def legend_lines(content: ReportContent) -> list[str]:
    """How to read the columns."""
    if not content.significance:
        return []
    return [
        "Δ: level minus baseline, with its 95% CI. n: seeds in the test (the unit); df: its"
        " degrees of freedom. g: Hedges' g, g_z of the per-seed differences (paired, mixed),"
        " g_s of the seed means (Welch). seeds to decide (in total, estimated): how many seeds"
        " in all, those already run included, a verdict (an effect or, with a margin,"
        " equivalence) needs to be reached with 80% power at the"
        " family's strictest Holm level, at the observed effect and SD, then the range over"
        " their 80% confidence limits; per level for Welch. MDE: the smallest difference"
        " detectable with 80% power at the current n.",
        "Interactions (paired 2×2): per seed, the second factor's effect at the first factor's"
        " other level minus its effect at the first factor's baseline.",
    ]


def factor_tables(content: ReportContent, units: Units) -> list[Table]:
    """Per factor: each level's trials, then (with tests) each level against the baseline."""
    tables = []
    for factor in content.result.factors:
        rows = [[lv.level + (" (baseline)" if lv.is_baseline else ""), str(lv.summary.n),
                 str(lv.n_trials), units.mean_sd(lv.summary.mean, lv.summary.std),
                 units.value_interval(lv.summary.ci_low, lv.summary.ci_high)]
                for lv in factor.levels]
        tables.append(Table(f"{factor.factor}: each level over seeds (a seed's mean over its"
                            " cells)",
                            ["level", "seeds", "trials", f"mean ± sd{units.value_unit}",
                             "95% CI"], rows,
                            right={1, 2, 3, 4}, kind="levels", key=factor.factor,
                            notes=_clipped(rows, units, content.metric)))
        if not content.significance:
            continue
        rows, notes = [], []
        for c in factor.comparisons:
            rows.append([c.level, *_comparison_cells(c, units)])
            notes += _comparison_notes(c)
        tables.append(Table(
            f"{factor.factor}: each level against {factor.baseline}",
            ["level", f"Δ{units.diff_unit} [95% CI]", "test", "n", "df", "p", "g",
             SEEDS_TO_DECIDE, f"MDE{units.diff_unit}", "verdict"],
            rows, right={1, 3, 4, 5, 6, 7, 8}, notes=notes, kind="comparisons",
            key=factor.factor))
    return tables


def _comparison_cells(c: Comparison, units: Units) -> list[str]:
    if c.test == "none":
        return [units.diff(c.diff), "none", str(c.n_seeds), "n/a", "n/a", "n/a", "n/a", "n/a",
                verdict_text(c, units)]
    test = {"paired": "paired", "mixed": "mixed model", "welch": "Welch"}[c.test]
    n = f"{c.n_level}+{c.n_baseline}" if c.test == "welch" else str(c.n_seeds)
    # The kind follows from the test (paired: g_z, Welch: g_s); the legend says so.
    g = "n/a" if not math.isfinite(c.effect_size) else f"{c.effect_size:.2f}"
    diff = f"{units.diff(c.diff)} {units.interval(c.diff_ci_low, c.diff_ci_high)}"
    return [diff, test, n, f"{c.df:.3g}", p_text(c.p), g, seeds_range(c), units.value(c.mde),
            verdict_text(c, units)]


def comparison_interval(c: Comparison) -> tuple[float, float, str]:
    """The interval a comparison's verdict rests on, and its name: an adaptive study's
    repeated interval where its plan decided it, else the fixed analysis's 95% CI."""
    planned = c.planned or {}
    if planned.get("low") is not None and planned.get("high") is not None:
        return (float(planned["low"]), float(planned["high"]),
                f"repeated interval (nominal {float(planned['nominal']):.2g})")
    return c.diff_ci_low, c.diff_ci_high, "95% CI"


def _comparison_notes(c: Comparison) -> list[str]:
    notes = [f"{c.level} vs {c.baseline}: {c.method}"] if c.test != "none" else []
    notes += [f"{c.level} vs {c.baseline}: {note}" for note in c.notes]
    if c.unpaired:
        shown = "; ".join(" ".join(f"{k}={v}" for k, v in t.items()) for t in c.unpaired[:5])
        more = f" and {len(c.unpaired) - 5} more" if len(c.unpaired) > 5 else ""
        notes.append(f"{c.level} vs {c.baseline}: {len(c.unpaired)} trials of seeds without"
                     f" every compared cell at both levels: {shown}{more}")
    if c.n_not_crossed:
        notes.append(f"{c.level} vs {c.baseline}: {c.n_not_crossed} trials in cells with no"
                     " counterpart at the other level (the design does not cross them) are not"
                     " compared")
    return notes


def interaction_tables(content: ReportContent, units: Units) -> list[Table]:
    """One table of the interaction tests with their verdicts, then each pair's cell means."""
    interactions = content.result.interactions
    if not interactions:
        return []
    rows, notes = [], []
    for it in interactions:
        a, b = it.factors
        judged = f"n/a: {it.note}" if it.test == "none" else verdict_text(it, units)
        rows.append([f"{a} × {b}", _interaction_test(it), _interaction_estimate(it, units),
                     _interaction_statistic(it), p_text(it.p), judged])
        if it.n_left_out:
            notes.append(f"{a} × {b}: {it.n_left_out} trials of seeds without every cell of the"
                         " pair are left out of the paired test")
        if it.note and it.test != "none":
            notes.append(f"{a} × {b}: {it.note}")
    tables = [Table("interactions: does one factor's effect depend on the other's level?",
                    ["factors", "test", f"difference of differences{units.diff_unit}",
                     "statistic", "p", "verdict"], rows, right={2, 3, 4}, notes=notes,
                    kind="interactions")]
    for it in interactions:
        a, b = it.factors
        columns = [f"{a} \\ {b}", *map(str, it.means.columns)]
        cells = [[str(level), *(f"{units.value(it.means.loc[level, col])}"
                                f" (n={it.counts.loc[level, col]})" for col in it.means.columns)]
                 for level in it.means.index]
        tables.append(Table(f"{a} × {b}: cell means{units.value_unit}", columns,
                            cells, right=set(range(1, len(columns))), kind="interaction"))
    return tables


def _interaction_test(it: Interaction) -> str:
    if it.test == "paired":
        kind = "difference of differences" if it.statistic_kind == "t" else "repeated measures"
        return f"paired {kind}, {it.n_blocks} seeds"
    return "two-way ANOVA" if it.test == "anova" else "none"


def _interaction_estimate(it: Interaction, units: Units) -> str:
    """For a paired 2×2: how much the second factor's effect changes with the first's level."""
    if not math.isfinite(it.contrast):
        return ""
    return f"{units.diff(it.contrast)} {units.interval(it.contrast_ci_low, it.contrast_ci_high)}"


def _interaction_statistic(it: Interaction) -> str:
    if not math.isfinite(it.statistic):
        return "n/a"
    df = ", ".join(f"{d:.0f}" for d in it.df)
    return f"{it.statistic_kind}({df})={it.statistic:.2f}"


def cell_table(content: ReportContent, units: Units, *, limit: int | None = None) -> Table:
    """Every cell, ranked; ``limit`` keeps the best few (the terminal) and says how many more."""
    design = content.result.design
    cells = content.result.cells
    notes = []
    if limit is not None and len(cells) > limit:
        notes.append(f"{len(cells) - limit} more cells in report.html, report.md and cells.csv"
                     " (--format)")
        cells = cells.head(limit)
    columns = ["rank", *design.factors, "seeds", f"mean ± sd{units.value_unit}",
               "95% CI"]
    rows = [[str(r["rank"]), *(str(r[f]) for f in design.factors), str(r["n_seeds"]),
             units.mean_sd(r["mean"], r["std"]), units.value_interval(r["ci_low"], r["ci_high"])]
            for r in cells.to_dict("records")]
    notes += _clipped(rows, units, content.metric)
    n = len(design.factors)
    order = "best first" if design.higher_is_better else "lowest first"
    return Table(f"every cell over seeds, {order}", columns, rows,
                 right={0, n + 1, n + 2, n + 3}, notes=notes, kind="cells")


def _clipped(rows: list[list[str]], units: Units, metric: str) -> list[str]:
    """The note under a table whose intervals were clipped to the metric's range."""
    return [units.clipped_note(metric)] if any(row[-1].endswith("*") for row in rows) else []


# A terminal shows this many cells; the files show them all.
TERMINAL_CELLS = 30


def all_tables(content: ReportContent, *, cell_limit: int | None = None) -> list[Table]:
    units = Units.for_metric(content.metric, content.trials[content.metric])
    return [*factor_tables(content, units), *interaction_tables(content, units),
            cell_table(content, units, limit=cell_limit)]
