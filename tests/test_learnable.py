"""Learnable activations (xIELU, PolyNorm): choices like any other, their parameters trained, counted and
recorded per layer and expert, with the fixed activation nearest what each layer learned."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import SPACES, run_cli, write_space
from torch import nn

from moesearch.core import costs, results, space
from moesearch.core.activations import NAMES, REGISTRY, ffn_params, hidden_width, is_learnable
from moesearch.ranks import learnable
from moesearch.ranks.model import FFN, NONLINEARITIES

LEARNABLE = [a for a in NAMES if is_learnable(a)]
FIXED = {a: NONLINEARITIES[s.nonlinearity] for a, s in REGISTRY.items() if not s.gated and not s.learned}


@pytest.mark.parametrize("activation", NAMES)
def test_every_ffn_has_the_parameters_the_cost_model_counts(activation):
    hidden = hidden_width(activation, 96, "params", 8)
    ffn = FFN(32, hidden, activation)
    assert sum(p.numel() for p in ffn.parameters()) == ffn_params(activation, 32, hidden)


@pytest.mark.parametrize("activation", LEARNABLE)
def test_a_learnable_activation_trains_its_own_parameters(activation):
    ffn = FFN(32, 96, activation)
    ffn(torch.randn(64, 32)).square().mean().backward()
    own = list(ffn.nonlinearity.parameters())
    assert sum(p.numel() for p in own) == REGISTRY[activation].learned
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)
    assert set(ffn.nonlinearity.learned()) and all(isinstance(v, float) for v in ffn.nonlinearity.learned().values())


@pytest.mark.parametrize("mult", [1.0, 30.0])
def test_a_learnable_activation_s_parameters_learn_at_their_own_rate(mult):
    from moesearch.ranks.model import Transformer
    from moesearch.ranks.parametrization import param_groups

    spec = space.load("tiny").model
    model = Transformer(spec, ["xielu", "polynorm"], ep_size=1)
    groups = param_groups(model, spec, 1e-3, 0.1, learned_mult=mult)
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    own = {name: p.numel() for name, p in model.named_parameters() if ".nonlinearity." in name}
    assert sum(own.values()) == (2 + 4) * spec.num_experts, "each expert's own xIELU 2 and PolyNorm 4"
    for name, p in model.named_parameters():
        expected = (1e-3 * mult, 0.0) if name in own else (1e-3, 0.1 if p.dim() >= 2 else 0.0)
        assert rate[id(p)] == pytest.approx(expected), name
    assert groups[0]["lr"] == 1e-3, "the steps table logs group 0's rate: the base one"


def test_the_xielu_curve_is_its_forward_and_starts_where_the_paper_does():
    module, x = learnable.XIELU(), torch.linspace(-3, 3, 601)
    assert module.learned() == pytest.approx({"alpha_p": 0.8, "alpha_n": 0.8})
    assert torch.allclose(module(x), learnable.XIELU.curve(module.learned(), x))
    assert module(torch.tensor([2.0])).item() == pytest.approx(0.8 * 4 + 0.5 * 2)
    assert module(torch.tensor([-2.0])).item() == pytest.approx(0.8 * (math.exp(-2) - 1 + 2) - 0.5 * 2)  # -0.0917


def test_the_polynorm_curve_is_its_forward_on_a_standard_normal_hidden_layer():
    module = learnable.PolyNorm()
    with torch.no_grad():
        module.weight.copy_(torch.tensor([0.5, -0.2, 0.1]))
        module.bias.fill_(0.05)
    z = torch.randn(1, 400_000, generator=torch.Generator().manual_seed(0))  # one row: the norm is over it
    expected = learnable.PolyNorm.curve(module.learned(), z)
    assert torch.allclose(module(z), expected, atol=0.02 * expected.abs().max().item())


@pytest.mark.parametrize("name", FIXED)
def test_the_nearest_fixed_activation_of_a_scaled_fixed_one_is_itself(name):
    x = torch.linspace(-3, 3, 601)
    found, distance = learnable.nearest(1.7 * FIXED[name](x), x, FIXED)
    assert found == name and distance == pytest.approx(0, abs=1e-6)


def test_learnable_activations_validate_as_choices_and_cost_their_parameters():
    learn = space.Space.model_validate(
        {**space.load("tiny").model_dump(), "activations": ["gelu", "swiglu", *LEARNABLE]}
    )
    assert set(LEARNABLE) <= set(learn.layer_choices()[0])
    m, layers = learn.model, ["xielu", "polynorm"]
    plain = costs.costs(m, ["relu", "relu"], 4)
    extra = sum(REGISTRY[a].learned * (m.num_experts if m.is_moe(i) else 1) for i, a in enumerate(layers))
    assert costs.costs(m, layers, 4).params_total - plain.params_total == extra


def test_the_learned_curves_are_drawn_per_layer_and_activation_with_their_nearest_fixed_one():
    import numpy as np
    import pandas as pd

    from moesearch.analysis import plots
    from moesearch.core.activations import CURVE_X

    x = np.array(CURVE_X)
    rows = pd.DataFrame(
        [
            {"layer": 0, "activation": "xielu", "learned_curve": list(x**2), "nearest_fixed": "relu2"},
            {"layer": 0, "activation": "xielu", "learned_curve": list(3 * x**2), "nearest_fixed": "relu2"},
            {"layer": 1, "activation": "polynorm", "learned_curve": list(x), "nearest_fixed": "silu"},
            {"layer": 1, "activation": "gelu", "learned_curve": None, "nearest_fixed": None},
        ]
    )
    fig = plots.learned(rows)
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_ylabel() for ax in panels] == ["polynorm(x) as learned", "xielu(x) as learned"]
    (line,) = [ln for ln in panels[1].lines if ln.get_label().startswith("layer 0")]
    assert np.allclose(line.get_ydata(), 2 * x**2), "the mean over trainings"
    assert "nearest relu2, 2 trainings" in line.get_label()
    assert plots.learned(rows[rows["activation"] == "gelu"]) is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "layout",
    [
        "[search]\nep_size = 2\n",  # every layer MoE, each rank half of every layer's experts
        "[model]\nmoe_every = 2\n",  # a dense layer, then an MoE one whose experts both ranks hold (ep_size 1)
    ],
)
def test_learnable_layers_train_through_the_cli_and_record_what_each_expert_learned(tmp_path, layout):
    text = (SPACES / "tiny.toml").read_text()
    body = "\n".join(
        f'activations = ["gelu", "swiglu", {", ".join(map(repr, LEARNABLE))}]'.replace("'", '"')
        if line.startswith("activations =")
        else line
        for line in text.splitlines()
    )
    section = layout.split("\n")[0] + "\n"
    path = write_space(tmp_path, body.replace(section, layout, 1))
    out = run_cli("train", str(path), "--nproc", "2", "--layers", ",".join(LEARNABLE), "--results", str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    layers = results.load_layers(tmp_path, "tiny")
    trial = results.load_trials(tmp_path, "tiny").iloc[0]
    for _, row in layers.iterrows():  # printed by train, and by pareto with its start for a categorical search
        assert f"learned layer {row['layer']}: nearest {row['nearest_fixed']}; " in out.stdout
    shown = run_cli("pareto", "--results", str(tmp_path)).stdout
    assert f"--layers {','.join(layers['nearest_fixed'])}" in shown and "nearest" in shown
    for _, row in layers.iterrows():
        learned = json.loads(row["learned"])
        names = set(learnable.XIELU().learned() if row["activation"] == "xielu" else learnable.PolyNorm().learned())
        assert set(learned) == names
        assert all(len(v) == (row["n_experts"] if row["moe"] else 1) for v in learned.values()), "every expert"
        # 12 steps move them little from their inits (0.8; 1/3 and 0): a sum over copies would double them
        for name, values in learned.items():
            start = {"alpha_p": 0.8, "alpha_n": 0.8, "b": 0.0}.get(name, 1 / 3)
            assert all(abs(v - start) < 0.1 for v in values), (name, values)
        assert row["nearest_fixed"] in FIXED and len(row["learned_curve"]) == 61
    model = space.load(str(path)).with_vocab(256).model
    assert trial["params_total"] == costs.costs(model, LEARNABLE, 4).params_total


class _Blocks(nn.Module):
    """The least a quantized evaluation hooks: blocks holding FFNs (`ranks/probes.ffn_slots`)."""

    def __init__(self, ffn: FFN):
        super().__init__()
        block = nn.Module()
        block.ffn = ffn
        self.blocks = nn.ModuleList([block])


@pytest.mark.slow
def test_smooth_swiglu_is_swiglu_in_full_precision_and_loses_less_to_int8_with_an_outlier_channel(one_rank):
    from moesearch.ranks.quantize import Calibration, FakeQuant

    torch.manual_seed(0)
    plain, smooth = FFN(32, 64, "swiglu"), FFN(32, 64, "smooth_swiglu")
    smooth.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for ffn in (plain, smooth):
            ffn.w_in.weight[64] *= 200  # the linear branch of hidden channel 0: an outlier channel
    x = torch.randn(512, 32)
    assert torch.equal(plain(x), smooth(x))
    errors = {}
    for ffn in (plain, smooth):
        model = _Blocks(ffn)
        with Calibration(model) as calibration:
            ffn(x[:256])  # calibrated on other rows than it is evaluated on
        calibration.reduce(torch.device("cpu"))
        with FakeQuant(calibration, "int8"), torch.no_grad():
            quantized = ffn(x[256:])
        full = ffn(x[256:]).detach()
        errors[ffn.activation] = ((quantized - full).norm() / full.norm()).item()
    assert errors["smooth_swiglu"] < errors["swiglu"] / 2, errors


@pytest.mark.slow
def test_smooth_swiglu_trains_as_swiglu_on_two_expert_parallel_ranks_and_quantizes_its_own_way(tmp_path):
    """The per-channel scales are all-reduced per global expert (each rank holds half of them): the same
    weights and val_loss as SwiGLU under common random numbers, its own 8-bit figures."""
    text = (SPACES / "tiny.toml").read_text().replace('"relu2"]', '"relu2", "smooth_swiglu"]')
    path = write_space(tmp_path, text.replace("[search]\n", "[search]\nep_size = 2\n", 1))
    for layers in ("swiglu,swiglu", "smooth_swiglu,swiglu"):
        out = run_cli("train", str(path), "--nproc", "2", "--layers", layers, "--results", str(tmp_path))
        assert out.returncode == 0, out.stderr[-3000:]
    plain, smooth = results.load_trials(tmp_path, "tiny").sort_values("trial").to_dict("records")
    assert (
        smooth["val_loss"] == pytest.approx(plain["val_loss"], rel=1e-6)
        and smooth["params_total"] == plain["params_total"]
    )
    assert smooth["quant_uncalibrated_experts"] == plain["quant_uncalibrated_experts"] == 0
    gaps = [(row["quant_gap_int8"], row["quant_gap_fp8"]) for row in (plain, smooth)]
    assert all(math.isfinite(g) for pair in gaps for g in pair) and gaps[0] != gaps[1], gaps
