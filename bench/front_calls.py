"""Are the expected front's P >= 0.9 calls right? (issue 32, item 8 and its goal)

    python bench/front_calls.py [--studies 200] [--out bench/data/front-calls.txt]

Synthetic studies with known truth, in the shape a user's first studies have: the ladder space's model
(gelu or swiglu per layer, width_policy 'width', so a swiglu layer costs more FLOPs), the uniform baselines
and the main-effects design's runs, one seed, val_loss = 2.5 + the swiglu layers' true effects + noise (sd
0.009, the default study's residual), train_flops_per_token the exact cost the records' model gives.
For every study the expected front (`analysis/expected.py`) is read as `pareto` prints it; each member with
P >= 0.9 in a testable model is a call, and it is right when no candidate truly dominates it (the truth's
expected values and the exact costs). A shrunk model calls nothing. Prints, per configuration, the calls,
the share right (the goal: at least 0.93) and the studies with a wrong call.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pandas as pd

from moesearch.analysis import expected
from moesearch.core import design, space
from moesearch.core.assignment import uniform
from moesearch.core.config import RunConfig
from moesearch.core.costs import costs

SD = 0.009  # one training's noise in the default study
TRUTHS = {  # the swiglu layers' true effects on val_loss, per configuration
    "4 layers, no effect": [0.0] * 4,
    "4 layers, mixed": [0.01, -0.01, -0.005, 0.0],  # layer 0 hurts (dominated), layer 3 costs for nothing
    "4 layers, every swiglu helps": [-0.012] * 4,
    "8 layers, mixed": [0.01, -0.01, -0.005, 0.0, 0.0, -0.003, 0.004, -0.008],
}
EXTRA = 2  # trainings beyond the design and baselines (the default study's TPE proposals), drawn at random


def study(n_layers: int, rng: np.random.Generator) -> tuple[pd.DataFrame, space.Space]:
    """One study's trials (val_loss to be filled) in the frame `results.load_trials` gives."""
    spec = space.load("ladder")
    if n_layers != spec.model.n_layers:
        raw = spec.model_dump(exclude={"scale"})
        raw["model"]["n_layers"], raw["search"]["trials"] = n_layers, 64
        spec = space.Space.model_validate(raw)
    choices = spec.layer_choices()
    runs = [tuple(a) for a in uniform(choices)] + [tuple(r) for r in design.runs(choices)]
    runs += [tuple(rng.choice(["gelu", "swiglu"], n_layers)) for _ in range(EXTRA)]
    config = RunConfig.build(spec, list(runs[0]), seed=0, data=None, world_size=2).model_dump_json()
    rows = [
        {
            "assignment": ",".join(r),
            "seed": 0,
            "train_flops_per_token": float(costs(spec.model, r, spec.train.micro_batch).train_flops_per_token),
            **{f"layer_{i:02d}": a for i, a in enumerate(r)},
        }
        for r in runs
    ]
    out = pd.DataFrame(rows)
    out["trial"] = range(len(out))
    return out.assign(state="COMPLETE", random_streams="crn", data_sha256="ab", config_json=config), spec


def truly_nondominated(spec: space.Space, effects_: np.ndarray) -> dict[str, bool]:
    """Every assignment: whether no other is at least as good in both objectives and better in one."""
    combos = list(itertools.product(["gelu", "swiglu"], repeat=len(effects_)))
    loss = np.array([sum(e for e, a in zip(effects_, c, strict=True) if a == "swiglu") for c in combos])
    flops = np.array([costs(spec.model, c, spec.train.micro_batch).train_flops_per_token for c in combos], float)
    keep = expected.nondominated(np.column_stack([loss, flops]))
    return {",".join(c): bool(k) for c, k in zip(combos, keep, strict=True)}


def run(truth: list[float], studies: int) -> tuple[int, int, int, int]:
    """(testable studies, calls at P >= RESOLVED, calls right, studies with a wrong call)."""
    rng = np.random.default_rng(0)
    calls = right = wrong_studies = testable = 0
    objectives = {"val_loss": "minimize", "train_flops_per_token": "minimize"}
    truth_front = None
    for _ in range(studies):
        trials, spec = study(len(truth), rng)
        truth_front = truth_front or truly_nondominated(spec, np.array(truth))
        x = np.column_stack([trials[f"layer_{i:02d}"] == "swiglu" for i in range(len(truth))]).astype(float)
        trials = trials.assign(val_loss=2.5 + x @ np.array(truth) + rng.normal(0, SD, len(trials)))
        table, _ = expected.expected_front(trials, objectives)
        if not expected.testable(table):
            continue
        testable += 1
        called = table[table["expected_front"] & (table["p_front"] >= expected.RESOLVED)]
        good = [truth_front[a] for a in called["assignment"]]
        calls, right, wrong_studies = calls + len(good), right + sum(good), wrong_studies + (not all(good))
    return testable, calls, right, wrong_studies


def text(name: str, studies: int, found: tuple[int, int, int, int]) -> str:
    testable, calls, right, wrong_studies = found
    share = f"{right / calls:.3f}" if calls else "-"
    return (
        f"{name}: {studies} studies ({testable} testable), {calls} calls at P >= {expected.RESOLVED}, "
        f"{share} right, {wrong_studies} studies with a wrong call"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--out", type=Path, help="Also write the lines here.")
    args = parser.parse_args()
    lines = []
    for name, truth in TRUTHS.items():
        lines.append(text(name, args.studies, run(truth, args.studies)))
        print(lines[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
