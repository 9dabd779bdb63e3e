"""Replay searches against an exhaustive table: every trial is answered by lookup instead of training.

An offline simulator of the search, apart from the supervisor that runs live ones: it trains nothing
and starts no process, so arms (sampler x pruning x replicates) can be compared over hundreds of seeds.
It runs the live search's own decisions (`supervisor/decide.py`: baselines first, repeats answered,
stop conditions, rung verdicts), so what it measures is what a search would do.

- `table`: the exhaustive study loaded as a table, every training of every assignment, and the draw
  that answers a query with one of them.
- `arms`: one replayed search of an arm, and many arms compared (hypervolume relative to the table's true
  front against the compute spent).
- `truth`: an arm scored by what it would recommend, against the table's expected front, and the
  scores summarised per arm.
- `checkpoint`: every run kept as it ends (with --out), so a stopped replay resumes.
"""
