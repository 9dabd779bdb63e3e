"""The benchmarks compare like with like: bench/bare_loop.py builds the very model a moesearch trial trains."""

from __future__ import annotations

import importlib
import sys

import pytest
from conftest import ROOT

from moesearch import space
from moesearch.costs import costs


def load(name: str):
    """A bench script as a module; bench/ goes on the path as `python bench/NAME.py` puts it (its helpers)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module(name)


@pytest.mark.parametrize("layers", [["gelu", "swiglu", "gelu", "swiglu"], ["swiglu"] * 4])
def test_the_bare_loop_model_has_the_trial_models_parameters(one_rank, layers):
    throughput, bare_loop = load("throughput"), load("bare_loop")
    spec = space.load(ROOT / "bench" / "throughput.toml")
    assert spec.model == space.load("default").model
    model = bare_loop.Model(throughput.bare_config(spec, layers, ep_size=1))
    assert sum(p.numel() for p in model.parameters()) == costs(spec.model, layers, spec.train.micro_batch).params_total


def test_the_replay_table_is_exhaustive_and_current():
    import pandas as pd

    from moesearch import results
    from moesearch.supervisor import replay

    trials = pd.read_parquet(ROOT / "bench" / "data" / "replay6-trials.parquet")
    table = replay.load_table(trials, "replay6")
    assert len(table.values) == space.load("replay6").size() == 64
    assert set(trials["schema_version"].astype(str)) <= set(results.READABLE), "a version moesearch still reads"
