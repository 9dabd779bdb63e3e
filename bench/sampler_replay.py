"""Sampler efficiency: every sampler replayed on the exhaustive replay6 table, many seeds each.

    python bench/sampler_replay.py [--seeds 100] [--trials 32]

The table (bench/data/replay6-trials.parquet) holds all 64 assignments of the replay6 space, each
trained once (`moesearch search replay6`, brute-force sampler). A replay runs moesearch's own search
loop (baselines first, repeats answered without budget) and answers each trial by lookup. Printed:
median hypervolume / true hypervolume at 4, 8, 16, ... trained trials, how often each sampler reaches
95% by the budget, and the ratio to random search at equal budget.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TABLE = Path(__file__).resolve().parent / "data" / "replay6-trials.parquet"

if __name__ == "__main__":
    args = sys.argv[1:] or ["--seeds", "100", "--trials", "32"]
    subprocess.run([sys.executable, "-m", "moesearch", "replay", str(TABLE), "--samplers", "tpe,nsga2,random",
                    *args], check=True)
