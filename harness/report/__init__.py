"""The report: a study's runs read back from MLflow and judged with statistics.

``collect`` turns runs into a frame (one row per trial); ``stats`` is the arithmetic (t-tests,
TOST, the mixed model, Holm, effect sizes, power); ``verdicts`` compares each level with its
baseline, the seed as the unit, and decides it (better, worse, equivalent, undecided), without
touching MLflow or matplotlib; ``render`` writes
the terminal table, Markdown, CSV, JSON and the self-contained HTML file; ``command`` ties them
together for ``harness report`` (``from harness.report.command import report_command``).
``synthetic`` records trials without training, for the tests and the benchmark.
"""
