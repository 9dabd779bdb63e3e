"""Does early stopping pay? Every arm (sampler x pruning) replayed on the hard exhaustive table.

    python bench/pruning_replay.py [--seeds 100] [extra `moesearch replay` flags, e.g. --rungs 40,80 --eta 2]

The table (bench/data/hard8-{trials,steps}.parquet) holds all 256 assignments of the hard8 space
(8 MoE layers, gelu or swiglu each, width-matched), each trained once for 160 steps with val_loss
every 20 steps (`moesearch search hard8`, brute-force sampler; docs/performance.md section 7).
A replay answers each trial and each rung from the table and runs moesearch's own decisions
(`supervisor/decide.py`), so it measures the shipped algorithm. Printed: per arm, the median
optimizer steps to reach 90% and 95% of the true hypervolume over the seeds, the share of seeds that
got there within the budget, trials pruned per run, and the ratio to random search and to the hand
search; the curves (median and quartiles against compute) go to bench/data/hard8-replay.png.

The goals it was built to check: tpe+mo-asha needs at most half the steps of tpe to 95%; tpe (with
or without pruning) at most half of random's and of hand's. Measured (2026-12-02, 100 seeds, 9 min
49 s on 2 cores): 0.70x tpe's, 0.60x random's, under a quarter of hand's (docs/performance.md
section 7).

Since issue 20 the replay also scores every run by the truth (`--score-points`, default 8): the regret
of what each arm's noise model recommends per cost level against the table's expected front, and how
often the members it calls resolved are on it (bench/noise_replay.py says how). On this one-seed table
the truth is the noise model of single trainings; scoring adds about 8 model fits a run (several minutes
over 100 seeds x 8 arms); `--score-points 0` skips it, as the measurement above did.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
TABLE = DATA / "hard8-trials.parquet"
BUDGET = 64 * 160  # steps of 64 full trainings: a quarter of the exhaustive table's 40,960

if __name__ == "__main__":
    args = sys.argv[1:] or ["--seeds", "100"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "moesearch",
            "replay",
            str(TABLE),
            "--steps",
            str(DATA / "hard8-steps.parquet"),
            "--samplers",
            "tpe,nsga2,random,hand",
            "--pruning",
            "none,mo-asha",
            "--budget",
            str(BUDGET),
            "--jobs",
            "2",
            "--plot",
            str(DATA / "hard8-replay.png"),
            *args,
        ],
        check=True,
    )
