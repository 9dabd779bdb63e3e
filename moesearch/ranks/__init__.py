"""The code that runs on the ranks of a worker group: the model, the training loop, the probes.

The only package that imports torch and deepspeed (`.importlinter` contracts in pyproject.toml).
It depends on the shared core modules of `moesearch` alone, never on the supervisor or the analysis.
"""
