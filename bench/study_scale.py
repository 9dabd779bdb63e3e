"""Does the supervisor's cost per trial stay flat as a study grows? (issue 33 item 15)

    python bench/study_scale.py [--sizes 100 1000 5000] [--repeats 20] [--postgres URL]

For a study of N finished trials (made here, in a fresh SQLite file, and in PostgreSQL where --postgres or
MOESEARCH_TEST_POSTGRES gives a server), times what the supervisor does around each training that does not
depend on the sampler: reserve a trial outside the sampler (`telling.reserve`), read it back by number
(`optuna_compat.trial`, as liveness and recovery do), ask whether it still runs (`telling.is_running`), tell
its result (`telling.tell_result`), and read the round's snapshot (`accounting.snapshot`). Prints each
operation's median milliseconds per size and its ratio to the smallest size, measured in the same run.
The sampler's own cost (TPE reads every finished trial to propose) is Optuna's and is left out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from moesearch.core import space
from moesearch.core.trial import TrialAttr
from moesearch.supervisor import accounting, optuna_compat, studies, telling

SPACE = space.load("hard8")  # 8 layers of 2 choices: 256 assignments, as a large study's would be


def filled(storage: optuna.storages.BaseStorage, name: str, n: int) -> optuna.Study:
    """A study of `n` completed trials, each as a worker group leaves it."""
    study = studies.open_study(storage, name, SPACE, seed=0, queue=False)
    choices = SPACE.layer_choices()
    distributions = {f"layer_{i:02d}": CategoricalDistribution(c) for i, c in enumerate(choices)}
    for k in range(n):
        layers = [c[(k >> i) & 1] for i, c in enumerate(choices)]
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                values=[2.5 + k * 1e-6, 1e6],
                params={f"layer_{i:02d}": a for i, a in enumerate(layers)},
                distributions=distributions,
                user_attrs={
                    TrialAttr.ASSIGNMENT: ",".join(layers),
                    TrialAttr.SEED: k // 256,
                    TrialAttr.TRAINED: True,
                    TrialAttr.COMPUTE: {"steps": 300, "device_s": 60.0},
                },
            )
        )
    return study


def per_trial(study: optuna.Study, repeats: int) -> dict[str, float]:
    """Median milliseconds of each supervisor operation over `repeats` trials."""
    times: dict[str, list[float]] = {}

    def timed(name, call, *args, **kwargs):
        start = time.perf_counter()
        out = call(*args, **kwargs)
        times.setdefault(name, []).append(1000 * (time.perf_counter() - start))
        return out

    layers = [c[0] for c in SPACE.layer_choices()]
    accounting.snapshot(study, seed=0)  # a search's first round tallies the study once
    for r in range(repeats):
        trial = timed("reserve", telling.reserve, study, SPACE, layers, seed=1000 + r, origin="train")
        timed("read by number", optuna_compat.trial, study, trial.number)
        timed("is_running", telling.is_running, study, trial.number)
        timed("tell", telling.tell_result, study, trial, [2.5, 1e6], None)
        timed("snapshot", accounting.snapshot, study, seed=0)
    return {name: statistics.median(values) for name, values in times.items()}


def run(url: str, sizes: list[int], repeats: int) -> list[str]:
    storage = optuna.storages.get_storage(url)
    rows = {n: per_trial(filled(storage, f"scale-{n}-{os.getpid()}", n), repeats) for n in sizes}
    lines = [f"{url.split(':')[0]}: median ms per trial (ratio to {sizes[0]} trials)"]
    for op in rows[sizes[0]]:
        cells = [f"{rows[n][op]:.2f} ({rows[n][op] / rows[sizes[0]][op]:.2f}x)" for n in sizes]
        lines.append(f"  {op:15s} " + "  ".join(f"{n} trials: {c}" for n, c in zip(sizes, cells, strict=True)))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--postgres", default=os.environ.get("MOESEARCH_TEST_POSTGRES"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        urls = [f"sqlite:///{Path(tmp) / 'scale.db'}"] + ([args.postgres] if args.postgres else [])
        for url in urls:
            for line in run(url, args.sizes, args.repeats):
                print(line, flush=True)


if __name__ == "__main__":
    main()
