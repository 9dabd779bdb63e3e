"""Limits shared by the search loop and its replay (light: no imports)."""

MAX_REPEATS_IN_A_ROW = 100  # a sampler proposing only evaluated assignments this often has converged: stop asking
