"""The per-position effect estimate recovers known effects from a constructed table of trials."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_results import record, write

from moesearch import results
from moesearch.analysis import effects


def test_known_additive_effects_are_recovered_with_intervals_that_cover_them(tmp_path):
    rng = np.random.default_rng(1)
    truth = {0: -0.05, 1: 0.0, 2: 0.03}  # swiglu instead of gelu, per layer
    rows, n = [], 0
    for combo in itertools.product(["gelu", "swiglu"], repeat=3):
        for seed in range(2):
            loss = 2.0 + sum(truth[i] for i, a in enumerate(combo) if a == "swiglu") + rng.normal(0, 0.005)
            rows.append(record(n, ",".join(combo), loss, 100.0, seed=seed))
            n += 1
    write(tmp_path, *rows)
    found = effects.position_effects(results.load_trials(tmp_path, "s"))
    assert list(found["layer"]) == [0, 1, 2] and set(found["activation"]) == {"swiglu"}
    assert set(found["reference"]) == {"gelu"} and (found["trials_with"] == 8).all()
    for row in found.itertuples():
        assert abs(row.effect - truth[row.layer]) < 3 * row.se and row.ci95 < 0.01
    lines = effects.text(found)
    assert "layer 0: swiglu instead of gelu -0.05" in lines[1] and "(clear)" in lines[1]
    assert "(inside noise)" in lines[2]


def test_too_few_trials_give_no_estimate_and_say_so(tmp_path):
    write(tmp_path, record(0, "gelu,gelu", 2.0, 1.0), record(1, "swiglu,swiglu", 1.9, 1.0))
    found = effects.position_effects(results.load_trials(tmp_path, "s"))
    assert found.empty and "too few trials" in effects.text(found)[0]
