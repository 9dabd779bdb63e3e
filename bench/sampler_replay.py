"""Sampler efficiency on the small exhaustive table: every arm replayed on replay6, many seeds each.

    python bench/sampler_replay.py [--seeds 100] [--budget 32]

The table (bench/data/replay6-trials.parquet) holds all 64 assignments of the replay6 space, each
trained once (`moesearch search replay6`, brute-force sampler), without learning curves, so compute
is counted in trials and pruning cannot be replayed: bench/pruning_replay.py uses the hard8 table.
A replay runs moesearch's own decisions (`supervisor/decide.py`: baselines first, repeats answered,
stop conditions) and answers each trial by lookup. Printed: per arm, the median compute to reach
90% and 95% of the true hypervolume, and its ratio to random search and to the hand search.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TABLE = Path(__file__).resolve().parent / "data" / "replay6-trials.parquet"

if __name__ == "__main__":
    args = sys.argv[1:] or ["--seeds", "100", "--budget", "32"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "moesearch",
            "replay",
            str(TABLE),
            "--samplers",
            "tpe,nsga2,random,hand",
            "--jobs",
            "2",
            *args,
        ],
        check=True,
    )
