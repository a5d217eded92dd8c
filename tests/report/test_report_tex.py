"""``harness report --format tex``: booktabs tables that pdflatex compiles, names escaped,
numbers in the report's units with the decimals their interval justifies."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_helpers import planted
from rich.console import Console

from harness.config import study_from_mapping
from harness.report.command import report_command
from harness.report.formats.tex import latex_escape
from harness.report.units import Units

NEEDS_LATEX = pytest.mark.skipif(
    shutil.which("pdflatex") is None or shutil.which("pdftoppm") is None,
    reason="pdflatex or pdftoppm not installed (Debian texlive-latex-recommended and"
           " poppler-utils; .ci/run installs them)")


def tex_report(tracking_uri: str, study: str, out: Path, **options) -> str:
    report_command(study, fmt="tex", out=out, tracking_uri=tracking_uri,
                   console=Console(file=open("/dev/null", "w")), **options)
    return (out / "report.tex").read_text(encoding="ascii")


def compile_page(tables: Path, folder: Path) -> np.ndarray:
    """``tables`` \\input into a one-page article, compiled and rendered: the page's pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "page.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\pagestyle{empty}\n"
        "\\begin{document}\n\\input{" + tables.resolve().as_posix() + "}\n\\end{document}\n")
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "page.tex"],
                         cwd=folder, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:]
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-singlefile", "page.pdf", "page"],
                   cwd=folder, check=True, timeout=60)
    return np.asarray(Image.open(folder / "page.png").convert("L"))


@NEEDS_LATEX
def test_a_trained_studys_tables_compile_with_pdflatex_and_render(digits_store, tmp_path):
    tex = tex_report(digits_store.uri, digits_store.study_a, tmp_path / "out",
                     significance=True, margin=0.05)
    for rule in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert tex.count(rule) == 2, rule
    assert "test\\_acc (\\%)" in tex and "$\\Delta$ (pp)" in tex
    assert "equivalence margin $\\pm 5.00$ pp" in tex
    # The comparison row: attention se against none, paired over the 2 seeds, 1 df.
    row = next(line for line in tex.splitlines() if line.startswith("model.attention & se"))
    cells = [c.strip() for c in row.removesuffix("\\\\").split("&")]
    assert cells[2] == "none" and cells[5] == "paired $t$" and cells[6:8] == ["2", "1"]
    assert cells[9].split()[0] in ("better", "worse", "equivalent", "undecided")
    page = compile_page(tmp_path / "out" / "report.tex", tmp_path / "latex")
    ink = page < 128
    assert ink.mean() > 0.005, "the rendered page is blank"
    assert ink[: page.shape[0] // 2].any(), "the tables sit on the page"


@NEEDS_LATEX
def test_names_with_latex_specials_are_escaped_and_compile(log_study, tracking_uri, tmp_path):
    study = study_from_mapping({
        "name": "lr_sweep",
        "base": {"train": {"epochs": 3}},
        "grid": {"model.attention": ["se", "none"],
                 "optim": [{"label": "sgd_5%", "name": "sgd", "lr": 0.1},
                           {"label": "adam&w #1", "name": "adamw", "lr": 1.0e-3}]},
        "seeds": [0, 1, 2],
        "report": {"metric": "test_acc", "baseline": {"model.attention": "none"}},
    })
    log_study(study, planted())
    tex = tex_report(tracking_uri, "lr_sweep", tmp_path / "out", significance=True)
    assert "Study lr\\_sweep:" in tex
    assert "sgd\\_5\\%" in tex and "adam\\&w \\#1" in tex
    assert "\\label{tab:lr-sweep-cells}" in tex
    compile_page(tmp_path / "out" / "report.tex", tmp_path / "latex")


def test_latex_escape_covers_the_specials_and_the_reports_symbols():
    assert latex_escape("a_b & 5% $x #1 {y}") == r"a\_b \& 5\% \$x \#1 \{y\}"
    assert latex_escape("~^\\") == r"\textasciitilde{}\textasciicircum{}\textbackslash{}"
    assert latex_escape("--margin") == "-{}-margin"
    assert latex_escape("Δ ± 4–38") == r"\ensuremath{\Delta} \ensuremath{\pm} 4--38"
    assert latex_escape("model.attention") == "model.attention"


@pytest.mark.parametrize(("half_width", "digits"), [
    (0.012, 1),      # ±1.2 pp: one decimal
    (0.0012, 2),     # ±0.12 pp
    (0.000012, 4),   # ±0.0012 pp
    (0.31, 0),       # ±31 pp: none
    (float("nan"), 2),  # one seed, no interval: the usual two
])
def test_the_interval_decides_the_decimals(half_width, digits):
    units = Units.for_metric("test_acc", pd.Series([0.9]))
    assert units.justified(half_width).digits == digits
