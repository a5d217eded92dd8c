"""Launchers start a study's queue workers through the scheduler a cluster already has.

The queue (``harness.study.queue``), not the scheduler, decides which trial runs where: a
launcher enqueues the study from the submitting machine, then asks the scheduler for workers
that each run the same ``harness run STUDY --storage … --tracking-uri …`` as a worker started
by hand.  ``slurm``: the workers as one SLURM job array, through submitit.
"""
