"""Limits and counts shared by the search loop, its replay and the analysis (light: no imports)."""

MAX_REPEATS_IN_A_ROW = 100  # a sampler proposing only evaluated assignments this often has converged: stop asking
VERIFY_SEEDS = 3  # `verify`'s fresh seeds per front member and baseline: enough for a first spread (2 degrees of freedom each)
