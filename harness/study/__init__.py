"""Studies: trial specs and keys, grid designs, executors and the study runner."""
