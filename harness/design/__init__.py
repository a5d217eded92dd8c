"""The design of an experiment, below both the study (which runs it) and the report (which
judges it): ``spec`` is one trial and its identity (``trial_key``, ``cell_key``), ``grid``
expands a study's base and grid into trials (levels, labels, baselines), and ``plan`` is an
adaptive study's pre-registered plan as data (the family of comparisons, what the plan commits
to, the rounds decided) and which trials a round needs.  Nothing here trains, tracks or tests.
"""
