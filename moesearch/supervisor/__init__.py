"""The supervisor and the coordination between worker groups: Optuna studies and their storage, the
search loop, worker groups (started as processes, never imported), liveness, recovery, replicates.

Light: no torch or deepspeed. May read results through `moesearch.analysis`; never imports `ranks`.
"""
