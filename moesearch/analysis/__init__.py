"""Read-only analysis of a study's Parquet records: Pareto ranks and front, seed noise, plots, report.

Light: pandas, moocore, matplotlib; no torch, no deepspeed, no study storage. Notebooks import
`moesearch.core.results` and these modules alone.
"""
