"""Mixed experts: an MoE layer whose experts differ in activation (`gelu+swiglu`, `gelu*3+swiglu`), placed by
global expert index, counted exactly, and its router's shares per activation recorded, over training and at
each evaluation."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner
from conftest import SPACES, run_cli, write_space

from moesearch.cli import cli
from moesearch.core import costs, results, space
from moesearch.core.activations import ffn_params, hidden_width, of_experts

TINY = space.load("tiny")
MIX_SPACE = (SPACES / "tiny.toml").read_text()


def _with(activations: str, model: str = "", experts: int = 2) -> str:
    body = "\n".join(
        f"activations = {activations}" if line.startswith("activations =") else line for line in MIX_SPACE.splitlines()
    )
    body = body.replace("num_experts = 2\n", f"num_experts = {experts}\n", 1)
    return body.replace("[model]\n", f"[model]\n{model}", 1)


def test_a_mix_splits_the_experts_in_runs_by_global_index():
    assert of_experts("gelu+swiglu", 4) == ["gelu", "gelu", "swiglu", "swiglu"]
    assert of_experts("gelu+swiglu+relu2", 6) == ["gelu"] * 2 + ["swiglu"] * 2 + ["relu2"] * 2
    assert of_experts("swiglu", 4) == ["swiglu"] * 4
    assert of_experts("gelu*3+swiglu", 4) == ["gelu"] * 3 + ["swiglu"]
    assert of_experts("gelu*3+swiglu", 8) == ["gelu"] * 6 + ["swiglu"] * 2
    assert of_experts("relu*2+swiglu", 6) == ["relu"] * 4 + ["swiglu"] * 2


@pytest.mark.parametrize("mix", ["gelu+swiglu", "gelu*3+swiglu"])
@pytest.mark.parametrize("policy", ["params", "width"])
def test_a_mix_costs_the_sum_of_its_experts(policy, mix):
    m = TINY.model.model_copy(update={"num_experts": 4, "width_policy": policy})
    layers = [mix, "gelu"]
    experts = sum(
        ffn_params(a, m.d_model, hidden_width(a, m.d_ff, policy, m.width_multiple)) for a in of_experts(layers[0], 4)
    )
    gelu = ffn_params("gelu", m.d_model, m.d_ff)
    assert (
        costs.costs(m, layers, 4).params_total - costs.costs(m, ["gelu", "gelu"], 4).params_total == experts - 4 * gelu
    )
    if policy == "params":  # every expert the same size: the active count is exact too
        assert costs.costs(m, layers, 4).params_active == costs.costs(m, ["gelu", "gelu"], 4).params_active


BAD = {
    "a mix in a dense layer": (
        _with('["gelu", "gelu+swiglu"]', "moe_every = 2\n"),
        "layer 0 takes mix 'gelu+swiglu', but it is a dense layer",
    ),
    "a mix not dividing the experts": (_with('["gelu", "gelu+swiglu+relu"]'), "does not divide model.num_experts 2"),
    "counts not dividing the experts": (
        _with('["gelu", "gelu*2+swiglu"]', experts=4),
        "its run of 3 experts does not divide model.num_experts 4",
    ),
    "a count of zero": (_with('["gelu", "gelu*0+swiglu"]'), "count in 'gelu*0'; allowed: a whole number"),
    "a count without a mix": (_with('["gelu", "swiglu*3"]'), "'swiglu*3': a count needs a mix"),
    "a mix named two ways": (_with('["gelu", "gelu*2+swiglu*2"]'), "is written 'gelu+swiglu' (parts in the"),
    "a mix in another order": (_with('["gelu", "swiglu+gelu"]'), "mix 'swiglu+gelu' is written 'gelu+swiglu'"),
    "a count in another script": (_with('["gelu", "gelu*²+swiglu"]'), "count in 'gelu*²'; allowed: a whole number"),
    "a learnable activation in a mix": (_with('["gelu", "gelu+xielu"]'), "two or more different fixed"),
    "an activation named twice": (_with('["gelu", "gelu+gelu"]'), "two or more different fixed"),
    "an unknown part": (_with('["gelu", "gelu+swish"]'), "unknown activation 'swish'"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_mix_fails_spaces_validate_in_one_line(tmp_path, case):
    body, expected = BAD[case]
    refused = CliRunner().invoke(cli, ["spaces", "validate", str(write_space(tmp_path, body))])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert expected in refused.output, refused.output


def _routed(trial: int, layer: int, choice: str, at: dict | None) -> dict:
    return {"trial": trial, "layer": layer, "activation": choice, "eval_activation_share": at and json.dumps(at)}


def test_the_routing_at_each_evaluation_reads_long_and_draws_a_panel_per_mix():
    import numpy as np
    import pandas as pd

    from moesearch.analysis import plots

    rows = pd.DataFrame(
        [
            _routed(0, 0, "gelu+swiglu", {"4": {"gelu": 0.6, "swiglu": 0.4}, "8": {"gelu": 0.8, "swiglu": 0.2}}),
            _routed(1, 0, "gelu+swiglu", {"4": {"gelu": 0.4, "swiglu": 0.6}, "8": {"gelu": 0.6, "swiglu": 0.4}}),
            _routed(0, 1, "gelu*3+swiglu", {"4": {"gelu": 0.7, "swiglu": 0.3}, "8": {"gelu": 0.9, "swiglu": 0.1}}),
            _routed(0, 2, "swiglu", {"4": {"swiglu": 1.0}, "8": {"swiglu": 1.0}}),  # one activation: nothing to say
            _routed(0, 3, "gelu", None),  # a dense layer
        ]
    )
    shares = results.routing_shares(rows)
    assert len(shares) == 12 and set(shares["activation"]) == {"gelu+swiglu", "gelu*3+swiglu"}
    assert shares.groupby(["trial", "layer", "step"])["share"].sum().tolist() == pytest.approx([1] * 6)
    fig = plots.routing(rows)
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in panels] == ["gelu*3+swiglu", "gelu+swiglu"]
    (mean,) = [ln for ln in panels[1].lines if ln.get_label().startswith("layer 0")]
    assert np.allclose(mean.get_ydata(), [0.5, 0.7]) and "2 trainings" in mean.get_label(), "the mean over trainings"
    even = [ln for ln in panels[0].lines if ln.get_label().startswith("even split")]
    assert even and np.allclose(even[0].get_ydata(), 0.75), "three GELU experts of four"
    assert plots.routing(rows[rows["layer"] >= 2]) is None


def test_pareto_says_whether_each_mixed_layer_s_router_prefers_an_activation():
    import pandas as pd

    from moesearch.analysis import within_layers

    def row(layer: int, choice: str, gelu: float) -> dict:
        return {"trial": 0, "layer": layer, "activation": choice, "activation_share": json.dumps({"gelu": gelu})}

    rows = pd.DataFrame(
        [row(0, "gelu+swiglu", g) for g in (0.46, 0.47, 0.48)]
        + [row(1, "gelu+swiglu", g) for g in (0.40, 0.60, 0.50)]
        + [row(2, "gelu*3+swiglu", g) for g in (0.80, 0.81, 0.82)]
        + [row(3, "swiglu", None)]
    )
    lines = within_layers.text(rows, seeds=pd.Series({0: 0}))
    assert lines[0].startswith("mixed layers")
    assert lines[1] == (
        "  layer 0 gelu+swiglu: gelu 0.470 (0.445 to 0.495; even 0.5: prefers swiglu), 3 trainings of 1 seed"
    )
    assert "(0.252 to 0.748; even 0.5: no preference shown)" in lines[2]
    assert "gelu 0.810 (0.785 to 0.835; even 0.75: prefers gelu)" in lines[3], "three GELU experts of four"
    assert len(lines) == 5 and "trainings of one seed share the router's start" in lines[4]
    two = rows.assign(trial=range(len(rows)))  # each training its own trial, seeds 0 and 1 alternating
    lines = within_layers.text(two, seeds=pd.Series({t: t % 2 for t in two["trial"]}))
    assert "3 trainings of 2 seeds" in lines[1] and len(lines) == 4, "no one-seed caveat where seeds differ"


@pytest.mark.slow
def test_each_global_expert_has_its_activation_and_weights_whatever_the_expert_parallel_size(one_rank):
    from moesearch.ranks.model import Transformer, init_weights, mix_experts

    spec = TINY.model.model_copy(update={"num_experts": 4})
    layers = ("gelu+swiglu", "swiglu")
    experts = {}
    for ep_size, first in ((1, 0), (2, 0), (2, 2)):  # all four here; this rank's half of two, either half
        model = Transformer(spec, list(layers), ep_size=ep_size)
        mix_experts(model, spec, layers, first)
        init_weights(model, spec, seed=0, first_expert=first, streams="crn")
        local = model.blocks[0].ffn.deepspeed_moe.experts.deepspeed_experts
        for j, expert in enumerate(local):
            assert all(p.allreduce is False and p.group_name for p in expert.parameters()), "DeepSpeed's marks"
            experts.setdefault(first + j, []).append((expert.activation, expert.state_dict()))
    assert [experts[e][0][0] for e in range(4)] == ["gelu", "gelu", "swiglu", "swiglu"]
    for e, copies in experts.items():
        (one_activation, one), (activation, other) = copies  # ep 1, and the ep 2 rank that holds it
        assert activation == one_activation and all(torch.equal(one[k], other[k]) for k in one), e


@pytest.mark.slow
@pytest.mark.parametrize(("ep_size", "mix", "experts"), [(1, "gelu+swiglu", 2), (2, "gelu*3+swiglu", 4)])
def test_a_mixed_layer_trains_on_two_ranks_and_records_its_router_s_share_per_activation(
    tmp_path, ep_size, mix, experts
):
    body = _with(f'["gelu", "swiglu", "{mix}"]', experts=experts)
    path = write_space(tmp_path, body.replace("[search]\n", f"[search]\nep_size = {ep_size}\n"))
    out = run_cli(
        "train", str(path), "--nproc", "2", "--layers", f"{mix},swiglu", "--results", str(tmp_path), "--monitor", "csv"
    )
    assert out.returncode == 0, out.stderr[-3000:]
    layers = results.load_layers(tmp_path, "tiny").set_index("layer")
    shares = json.loads(layers.loc[0, "activation_share"])
    assert f"routed layer 0: gelu {shares['gelu']:.3f}, swiglu {shares['swiglu']:.3f}" in out.stdout
    shown = run_cli("pareto", "--results", str(tmp_path)).stdout
    assert f"layer 0 {mix}: gelu {shares['gelu']:.3f} (even {0.5 if experts == 2 else 0.75:g}; one training" in shown
    assert set(shares) == {"gelu", "swiglu"} and sum(shares.values()) == pytest.approx(1)
    load, gelu = layers.loc[0, "expert_load"], [a == "gelu" for a in of_experts(mix, experts)]
    assert shares["gelu"] == pytest.approx(sum(share for share, g in zip(load, gelu, strict=True) if g))
    assert json.loads(layers.loc[1, "activation_share"]) == {"swiglu": pytest.approx(1)}
    at_evals = json.loads(layers.loc[0, "eval_activation_share"])  # the held-out tokens, at steps 4, 8 and 12
    assert list(at_evals) == ["4", "8", "12"] and all(set(s) == {"gelu", "swiglu"} for s in at_evals.values())
    assert all(sum(s.values()) == pytest.approx(1) and min(s.values()) >= 0 for s in at_evals.values())
    assert json.loads(layers.loc[1, "eval_activation_share"])["12"] == {"swiglu": pytest.approx(1)}
    (run,) = (tmp_path / "tiny" / "monitor" / "csv").iterdir()
    assert "*" not in run.name, "a folder name without a glob character"
    with open(run / "Eval_routing_layer_0_gelu.csv") as f:
        logged = [float(row["gelu"]) for row in csv.DictReader(f)]
    assert logged == pytest.approx([s["gelu"] for s in at_evals.values()], rel=1e-6), "the monitors log them too"
    assert not (run / "Eval_routing_layer_1_swiglu.csv").exists(), "a layer of one activation has nothing to say"
    trial = results.load_trials(tmp_path, "tiny").iloc[0]
    model = TINY.model.model_copy(update={"num_experts": experts})
    assert trial["params_total"] == costs.costs(model, [mix, "swiglu"], 4).params_total
