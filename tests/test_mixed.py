"""Mixed experts: an MoE layer whose experts differ in activation (`gelu+swiglu`), placed by global expert
index, counted exactly, and its router's shares per activation recorded."""

from __future__ import annotations

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


def _with(activations: str, model: str = "") -> str:
    body = "\n".join(
        f"activations = {activations}" if line.startswith("activations =") else line for line in MIX_SPACE.splitlines()
    )
    return body.replace("[model]\n", f"[model]\n{model}", 1)


def test_a_mix_splits_the_experts_in_equal_runs_by_global_index():
    assert of_experts("gelu+swiglu", 4) == ["gelu", "gelu", "swiglu", "swiglu"]
    assert of_experts("gelu+swiglu+relu2", 6) == ["gelu"] * 2 + ["swiglu"] * 2 + ["relu2"] * 2
    assert of_experts("swiglu", 4) == ["swiglu"] * 4


@pytest.mark.parametrize("policy", ["params", "width"])
def test_a_mix_costs_the_sum_of_its_experts(policy):
    m = TINY.model.model_copy(update={"num_experts": 4, "width_policy": policy})
    layers = ["gelu+swiglu", "gelu"]
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
    "a mix not dividing the experts": (_with('["gelu", "gelu+swiglu+relu"]'), "do not split model.num_experts 2"),
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
@pytest.mark.parametrize("ep_size", [1, 2])
def test_a_mixed_layer_trains_on_two_ranks_and_records_its_router_s_share_per_activation(tmp_path, ep_size):
    body = _with('["gelu", "swiglu", "gelu+swiglu"]').replace("[search]\n", f"[search]\nep_size = {ep_size}\n")
    path = write_space(tmp_path, body)
    out = run_cli("train", str(path), "--nproc", "2", "--layers", "gelu+swiglu,swiglu", "--results", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    layers = results.load_layers(tmp_path, "tiny").set_index("layer")
    shares = json.loads(layers.loc[0, "activation_share"])
    assert set(shares) == {"gelu", "swiglu"} and sum(shares.values()) == pytest.approx(1)
    load = layers.loc[0, "expert_load"]
    assert shares["gelu"] == pytest.approx(sum(load[: len(load) // 2])), "the first half of the experts is gelu's"
    assert json.loads(layers.loc[1, "activation_share"]) == {"swiglu": pytest.approx(1)}
    trial = results.load_trials(tmp_path, "tiny").iloc[0]
    assert trial["params_total"] == costs.costs(TINY.model, ["gelu+swiglu", "swiglu"], 4).params_total
