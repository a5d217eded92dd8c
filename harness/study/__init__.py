"""Studies: trial specs and keys, grid designs, executors, the study runner, and rerun (one
trial again from its recorded config and seed)."""
