"""Numbers and verdicts as text: a metric's units, values, intervals, p-values and verdicts.

Accuracy-like fractions are shown in percent and their differences in percentage points; the
CSV and JSON files keep the raw fractions. Every text format and the figures take their units
from ``Units.for_metric``, so a table and its plot never disagree on the scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from harness.directions import value_range
from harness.report.verdicts import (
    BETTER,
    EQUIVALENT,
    INTERACTION,
    WORSE,
    Comparison,
    Interaction,
)


@dataclass(frozen=True)
class Units:
    """Accuracy-like fractions are shown in percent and their differences in pp."""

    scale: float
    percent: bool
    digits: int
    # The metric's range (``directions.value_range``): a value's interval is clipped to it.
    bounds: tuple[float, float] | None = None

    @staticmethod
    def for_metric(metric: str, values: pd.Series) -> Units:
        fraction = any(word in metric for word in ("acc", "top5", "f1", "ece"))
        finite = values.dropna()
        bounds = value_range(metric)
        if fraction and len(finite) and finite.abs().max() <= 1:
            return Units(100.0, True, 2, bounds)
        return Units(1.0, False, 4, bounds if bounds is not None and (
            not len(finite) or finite.abs().max() <= bounds[1]) else None)

    @property
    def value_unit(self) -> str:
        return " (%)" if self.percent else ""

    @property
    def diff_unit(self) -> str:
        return " (pp)" if self.percent else ""

    def value(self, x: float) -> str:
        return "n/a" if not math.isfinite(x) else f"{x * self.scale:.{self.digits}f}"

    def diff(self, x: float) -> str:
        return "n/a" if not math.isfinite(x) else f"{x * self.scale:+.{self.digits}f}"

    def interval(self, low: float, high: float) -> str:
        if not (math.isfinite(low) and math.isfinite(high)):
            return "n/a"
        return f"[{self.value(low)}, {self.value(high)}]"

    def value_interval(self, low: float, high: float) -> str:
        """A value's interval, clipped to the metric's range and then marked ``*``: a t
        interval over few seeds can pass 100 % (``CLIPPED_NOTE`` says so under the table)."""
        if self.bounds is None or not (math.isfinite(low) and math.isfinite(high)):
            return self.interval(low, high)
        lo, hi = self.bounds
        if low >= lo and high <= hi:
            return self.interval(low, high)
        return self.interval(max(low, lo), min(high, hi)) + "*"

    def clipped_note(self, metric: str) -> str:
        lo, hi = self.bounds or (0.0, 1.0)
        unit = " %" if self.percent else ""
        return (f"*: the 95% CI passed {metric}'s range [{self.value(lo)}, {self.value(hi)}]"
                f"{unit} and is clipped to it (few seeds, or a mean near the edge)")

    def justified(self, half_width: float) -> Units:
        """These units with as many decimals as an interval of ``half_width`` (in the metric's
        own units) justifies: its half-width to two significant digits, at most six decimals;
        the usual digits when there is no interval (one seed)."""
        scaled = abs(half_width) * self.scale
        if not (math.isfinite(scaled) and scaled > 0):
            return self
        return replace(self, digits=min(6, max(0, 1 - math.floor(math.log10(scaled)))))

    def mean_sd(self, mean: float, std: float) -> str:
        """Mean ± SD, "81.20 ± 0.35"; n/a for a missing mean, and for a missing SD alone."""
        if not math.isfinite(mean):
            return "n/a"
        return f"{self.value(mean)} ± {self.value(std) if math.isfinite(std) else 'n/a'}"


def p_text(p: float) -> str:
    """Two significant digits, and below 0.001 only that (the files keep the exact value)."""
    if not math.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.2g}"


def verdict_text(c: Comparison | Interaction, units: Units) -> str:
    """The verdict in words with the adjusted p it rests on: "better (p_holm=0.003)"."""
    planned = getattr(c, "planned", None)
    if planned is not None:
        if planned.get("open"):
            return f"undecided (plan: open, next round runs {planned['next_seeds']} seeds)"
        if planned.get("final"):
            return f"undecided (plan: at max seeds, {planned['n_seeds']})"
        return (f"{planned['verdict']} (plan: round {planned['look']}, {planned['n_seeds']}"
                " seeds)")
    if not math.isfinite(c.p):
        return "undecided (no test)"
    p = p_text(c.p_holm)
    p = f"p_holm{'' if p[0] == '<' else '='}{p}"
    margin = f"±{units.value(c.margin).strip()}{' pp' if units.percent else ''}" \
        if c.margin else ""
    if c.verdict in (BETTER, WORSE, INTERACTION):
        return f"{c.verdict} ({p})"
    if c.verdict == EQUIVALENT:
        q = p_text(c.p_equivalence_holm)
        q = f"p_holm{'' if q[0] == '<' else '='}{q}"
        what = "additive" if isinstance(c, Interaction) else "equivalent"
        return f"{what} within {margin} (TOST {q})"
    return f"undecided ({p}{f'; not shown within {margin}' if margin else ''})"


# The first words ``verdict_text`` can give; the terminal and the HTML colour a cell by them.
VERDICT_WORDS = ("better", "worse", "equivalent", "additive", "interaction", "undecided")


def verdict_word(cell: str) -> str:
    """The verdict a table cell states ("better", …), or "" for any other cell."""
    word = cell.split(" ", 1)[0]
    return word if word in VERDICT_WORDS and (" (" in cell or " within" in cell) else ""


def _count(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞"
    return f"{int(x)}"


def seeds_range(c: Comparison) -> str:
    """The seeds-to-decide estimate: "7 (4–38)"; one number when the range is one."""
    if math.isnan(c.seeds_needed):
        return "n/a"
    low, high = _count(c.seeds_needed_low), _count(c.seeds_needed_high)
    point = _count(c.seeds_needed)
    return point if low == high == point else f"{point} ({low}–{high})"
