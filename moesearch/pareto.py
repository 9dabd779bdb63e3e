"""The Pareto front of a study's completed trials, with the uniform baselines beside it.

Non-dominance comes from moocore (maintained, C-backed, mixed min/max directions); light: no torch.
"""

from __future__ import annotations

import json

import moocore
import numpy as np
import pandas as pd

from moesearch.metrics import METRICS, fmt

_CONTEXT = ("params_active", "train_flops_per_token")  # cost columns shown beside the objectives


def objectives_of(trials: pd.DataFrame) -> dict[str, str]:
    """The study's objectives, as recorded with its trials."""
    return json.loads(trials["objectives"].iloc[0])


def mark_front(trials: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Completed trials with two added columns: `pareto` (non-dominated) and `baseline` (uniform assignment)."""
    done = trials[trials["state"] == "COMPLETE"].copy()
    points = done[list(objectives)].to_numpy(dtype=float)
    maximise = [d == "maximize" for d in objectives.values()]
    done["pareto"] = moocore.is_nondominated(points, maximise=maximise) if len(done) else np.array([], bool)
    done["baseline"] = done["assignment"].map(lambda a: len(set(a.split(","))) == 1)
    return done


def front_table(trials: pd.DataFrame) -> str:
    """The front and the baselines as a text table; '*' marks the front, 'B' a uniform baseline."""
    objectives = objectives_of(trials)
    marked = mark_front(trials, objectives)
    shown = marked[marked["pareto"] | marked["baseline"]].sort_values(list(objectives)[0])
    mark = shown["pareto"].map({True: "*", False: " "}) + shown["baseline"].map({True: "B", False: " "})
    columns = {o: f"{o} [{METRICS[o][0]}] ({'max' if d == 'maximize' else 'min'})" for o, d in objectives.items()}
    view = pd.DataFrame({"": mark, "trial": shown["trial"], "seed": shown["seed"], "assignment": shown["assignment"]})
    for name, header in columns.items():
        view[header] = shown[name].map(fmt)
    for name in _CONTEXT:
        if name not in objectives:
            view[f"{name} [{METRICS[name][0]}]"] = shown[name].map(fmt)
    failed = int((trials["state"] != "COMPLETE").sum())
    summary = (f"{len(marked)} complete trials ({failed} failed), {int(marked['pareto'].sum())} on the front; "
               f"* = Pareto front, B = uniform baseline")
    return view.to_string(index=False) + "\n" + summary
