"""The answer as `pareto`, the report and front.png lead with it: the expected front beside the baselines,
each member against each baseline with the model's 95% interval (analysis/answer.py)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from test_effects import additive, table

from moesearch.analysis import answer, effects, expected, pareto, plots
from moesearch.cli import cli


def cost(combo) -> float:  # tokens/s, maximised: each swiglu layer costs 10
    return 100.0 - 10 * sum(a != "gelu" for a in combo)


@pytest.fixture
def known(tmp_path):
    """Layer 0's swiglu lowers val_loss by 0.03 and costs 10 tokens/s; layer 1's costs the same and does nothing."""
    trials = table(tmp_path, additive({0: -0.03}), 2, 3, 0.004, cost=cost)
    analysis = pareto.analyse(trials)
    found = expected.expected_front(trials, analysis.objectives)
    return tmp_path, trials, analysis, found


def test_the_answer_is_the_expected_front_beside_the_baselines_with_one_knee(known):
    _, _, analysis, found = known
    told = answer.answer(analysis, found)
    on = set(found[0].loc[found[0]["expected_front"], "assignment"])
    assert set(told.table.loc[told.table["front"], "assignment"]) == on >= {"gelu,gelu", "swiglu,gelu"}
    assert set(told.table.loc[told.table["baseline"], "assignment"]) == {"gelu,gelu", "swiglu,swiglu"}
    assert told.table["knee"].sum() == 1 and told.table.loc[told.table["knee"], "front"].all()
    assert told.candidates == 4


def test_each_comparison_is_the_models_contrast_with_its_own_interval(known):
    _, _, analysis, found = known
    told = answer.answer(analysis, found)
    fit = found[1]["val_loss"]  # the main-effects fit, never a wider one chosen on these data
    row = told.deltas.set_index(["assignment", "baseline"]).loc[("swiglu,gelu", "gelu,gelu")]
    codes = effects.layer_codes(told.table.set_index("assignment").loc[["swiglu,gelu", "gelu,gelu"]].reset_index())
    diff, se = fit.difference(codes.iloc[[0]], codes.iloc[[1]])
    assert row["val_loss_delta"] == pytest.approx(diff[0])
    family = len(told.deltas)  # the intervals hold jointly over the comparisons
    assert row["val_loss_hi"] - row["val_loss_lo"] == pytest.approx(2 * fit.quantile(family) * se[0])
    assert fit.quantile(family) > fit.quantile()
    assert row["val_loss_lo"] < -0.03 < row["val_loss_hi"], "the truth inside its interval"
    apart = np.hypot(*fit.predict(codes)[1])
    assert se[0] < apart, "the shared mean cancels: tighter than two predictions' intervals side by side"
    assert "lower val_loss (95% " in row["summary"] and "10.0% lower tokens_per_s than all-gelu" in row["summary"]


def test_an_interval_that_holds_zero_says_no_resolved_difference(known):
    _, _, analysis, found = known
    told = answer.answer(analysis, found)
    rows = told.deltas.set_index(["assignment", "baseline"])
    if ("swiglu,gelu", "swiglu,swiglu") in rows.index:  # layer 1 does nothing: all-swiglu's loss is the same
        assert "no resolved difference in val_loss (" in rows.loc[("swiglu,gelu", "swiglu,swiglu"), "summary"]
    else:
        pytest.fail("swiglu,gelu is on the expected front and all-swiglu a baseline")


def test_a_model_not_testable_yet_gives_no_answer(known):
    _, _, analysis, found = known
    assert answer.answer(analysis, (found[0].assign(testable=False), found[1])) is None
    assert answer.answer(analysis, None) is None


def test_the_front_picture_draws_the_answers_intervals_with_the_trainings_behind(known):
    _, _, analysis, found = known
    told = answer.answer(analysis, found)
    ax = plots.front(analysis, found[0], told).axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "expected front (95% intervals)" in labels and "single trainings (means over seeds)" in labels
    (bars,) = ax.containers
    on = told.table[told.table["front"]]
    y_segments = bars.lines[2][1].get_segments()  # per member: from its val_loss_lo to its val_loss_hi
    drawn = np.array(sorted((s[0][1], s[1][1]) for s in y_segments))
    assert drawn == pytest.approx(np.array(sorted(zip(on["val_loss_lo"], on["val_loss_hi"], strict=True))))
    notes = " | ".join(t.get_text() for t in ax.texts)
    knee = told.table.loc[told.table["knee"], "assignment"].item()
    assert "all-gelu" in notes and "all-swiglu" in notes and knee in notes and "P " in notes


def test_pareto_leads_with_the_answer_and_observed_with_the_single_trainings(known):
    folder = str(known[0])
    led = CliRunner().invoke(cli, ["pareto", "--results", folder]).output.splitlines()
    assert led[1].startswith("verdict: ") and "P front" in led[2] and "rank" not in led[2]
    assert any(line.startswith("expected front against the baselines") for line in led)
    observed = CliRunner().invoke(cli, ["pareto", "--results", folder, "--observed"]).output.splitlines()
    assert "rank" in observed[2] and "trial" in observed[2]
    assert not any(line.startswith("expected front against the baselines") for line in observed)


def test_an_exact_cost_under_a_shrunk_fit_is_each_candidate_s_computed_cost_drawn_without_noise(tmp_path):
    """Records that carry their run config: train_flops_per_token of every candidate, trained or not, is the
    cost core/costs.py computes (one number, no interval), in every posterior draw; a shrunk fit read it as
    '1,500 [1,500, 1,500]' and drew it with noise."""
    import json

    from test_results import record, write

    from moesearch.core import results, space
    from moesearch.core.config import RunConfig
    from moesearch.core.costs import costs

    spec = space.load("default")
    rng, rows = np.random.default_rng(0), []
    trained = ["gelu,gelu,gelu,gelu", "swiglu,swiglu,swiglu,swiglu", "swiglu,gelu,gelu,gelu", "gelu,gelu,swiglu,gelu"]
    for n, text in enumerate(trained + trained[:1]):
        r = record(n, text, 2.5 + rng.normal(0, 0.01), 100.0)
        config = RunConfig.build(spec, text.split(","), seed=0, data=None, world_size=2)
        r.trial["config_json"] = config.model_dump_json()
        r.trial["train_flops_per_token"] = float(
            costs(spec.model, text.split(","), spec.train.micro_batch).train_flops_per_token
        )
        rows.append(r)
    write(tmp_path, *rows)
    trials = results.load_trials(tmp_path, "s")
    objectives = {"val_loss": "minimize", "train_flops_per_token": "minimize"}
    table, fits = expected.expected_front(trials, objectives)
    assert not fits["train_flops_per_token"].testable, "five trainings of four layers: a shrunk fit"
    truth = [costs(spec.model, a.split(","), spec.train.micro_batch).train_flops_per_token for a in table["assignment"]]
    assert len(table) == 16 and list(table["train_flops_per_token"]) == truth, "untrained candidates too"
    assert (table["train_flops_per_token_lo"] == table["train_flops_per_token_hi"]).all()
    shown = expected.text(table, objectives, [])
    assert not [
        line for line in shown if "train_flops_per_token" in line and "[" in line.split("train_flops_per_token")[1]
    ]
    written = [json.loads(c) for c in trials["config_json"]]
    assert all("model" in c for c in written)
    edited = trials.assign(train_flops_per_token=trials["train_flops_per_token"] + 1)  # another formula's records
    codes = effects.layer_codes(table)
    assert expected.exact_costs(edited[edited["state"] == "COMPLETE"], "train_flops_per_token", codes) is None


def test_a_deeper_size_s_records_read_in_fewer_layers_keep_their_exact_costs():
    """ladder.in_layers reads an 8-layer size's records in the proxy's 4 layers: each candidate's cost is its
    assignment deepened, as trained (not the 8-layer model's cost of 4 layers, which matches no record)."""
    import pandas as pd

    from moesearch.core import space
    from moesearch.core.assignment import deepen
    from moesearch.core.config import RunConfig
    from moesearch.core.costs import costs

    deep = space.load("ladder-depth").at_size("d8")
    trained = ["gelu,gelu,gelu,gelu", "swiglu,gelu,gelu,swiglu"]
    flops = [costs(deep.model, deepen(a.split(","), 8), deep.train.micro_batch).train_flops_per_token for a in trained]
    config = RunConfig.build(deep, ["gelu"] * 8, seed=0, data=None, world_size=2).model_dump_json()
    done = pd.DataFrame({"assignment": trained, "train_flops_per_token": flops, "config_json": config})
    codes = pd.DataFrame([a.split(",") for a in ["swiglu,swiglu,swiglu,swiglu", *trained]])
    found = expected.exact_costs(done, "train_flops_per_token", codes)
    assert list(found[1:]) == flops
    assert found[0] == costs(deep.model, ["swiglu"] * 8, deep.train.micro_batch).train_flops_per_token
