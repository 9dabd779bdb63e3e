"""Per-trial overhead: one live worker group for many trials against a fresh group (torchrun launch) per trial.

    python bench/overhead.py [--trials 8] [--nproc 2]

Overhead = a trial's wall time in the supervisor minus its training loop's time: engine set-up,
evaluation, messages, and for a relaunch the whole group start (Python, torch, DeepSpeed, process
group). Both arms run the tiny space's assignments in this process, alternating blocks so that drift
hits both. Goal: <= 0.5 s per trial live, and at least 10x less than relaunching.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from moesearch.core import corpus, space
from moesearch.core.launch import Launch
from moesearch.supervisor.group import WorkerGroup
from moesearch.supervisor.reference import reference_point
from moesearch.supervisor.runner import run_trial
from moesearch.supervisor.settings import Settings


def overhead(settings: Settings, group: WorkerGroup, number: int, layers: list[str]) -> float:
    outcome = run_trial(
        settings, group, number, layers, origin="search", replicate_of=None, reference=reference_point(settings.space)
    )
    assert outcome.ok, outcome.row["failure_reason"]
    return outcome.row["wall_time_s"] - outcome.row["train_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per arm")
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    spec = space.load("tiny")
    assignments = [[a, b] for a in spec.layer_choices()[0] for b in spec.layer_choices()[1]]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            space=spec,
            study="bench",
            storage="unused",
            results=Path(tmp),
            launch=Launch(args.nproc),
            seed=0,
            data=None,
            data_sha256=corpus.load(None).sha256,
            progress=False,
        )
        live, relaunch, first_live = [], [], None
        with WorkerGroup(settings.launch, Path(tmp) / "logs") as group:
            first_live = overhead(settings, group, 0, assignments[0])  # includes this group's launch
            for n in range(args.trials):
                live.append(overhead(settings, group, n + 1, assignments[n % len(assignments)]))
                with WorkerGroup(settings.launch, Path(tmp) / f"logs-relaunch-{n}") as fresh:
                    relaunch.append(overhead(settings, fresh, n + 1, assignments[n % len(assignments)]))
    live_s, relaunch_s = statistics.median(live), statistics.median(relaunch)
    print(f"{'arm':<24}{'trials':>7}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, values in (("live group", live), ("relaunch per trial", relaunch)):
        print(f"{name:<24}{len(values):>7}{statistics.median(values):>10.3f}{min(values):>8.3f}{max(values):>8.3f}")
    print(f"first trial of the live group (its launch included): {first_live:.3f} s")
    print(f"relaunch / live: {relaunch_s / live_s:.1f}x (tiny space, {args.nproc} ranks)")


if __name__ == "__main__":
    main()
