"""The report: a study's runs read back from MLflow and judged with statistics.

``collect`` turns runs into a frame (one row per trial); ``stats`` is the arithmetic (t-tests,
TOST, the mixed model, Holm, effect sizes, power); ``verdicts`` compares each level with its
baseline, the seed as the unit, and decides it (better, worse, equivalent, undecided), without
touching MLflow or matplotlib; ``sequential`` holds the spending boundaries of adaptive seeds,
``adaptive`` an adaptive study's plan and each round's decisions.
``content`` is the computed report, ``units`` writes its numbers and verdicts as text,
``tables`` lays out the tables every text format shares, and ``formats`` writes the terminal
table, Markdown, the self-contained HTML file (figures from ``harness.viz.plots``), CSV, JSON
and LaTeX (booktabs tables, the forest plot beside them); ``parent`` puts the summary on the
study's parent run; ``command`` ties them together for ``harness report`` (``from
harness.report.command import report_command``); ``compare`` sets two studies' shared cells
side by side (``harness compare``).
"""
