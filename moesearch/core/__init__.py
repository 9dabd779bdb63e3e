"""The shared core: what every side (ranks, supervisor, analysis, CLI) imports, and nothing else.

The activation registry, a per-layer assignment, the space file, a trial's config and analytic cost,
the text, the Parquet records, a trial's words (`trial`) and the supervisor-rank messages (`protocol`),
launch commands and signals, and the main-effects design. No torch, no side: the import contracts in
pyproject.toml keep it so.
"""
