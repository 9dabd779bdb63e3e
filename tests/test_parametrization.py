"""muP: its rules against Tensor Programs V's formulas, the base shape equal to the standard model, per-group
learning rates through DeepSpeed's schedule, and the coordinate check (flat under muP, growing under standard)."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner
from conftest import ROOT

from moesearch.cli import cli
from moesearch.core import sections, space
from moesearch.core.config import RunConfig
from moesearch.supervisor.coords import under

TINY = space.load("tiny")


def at_width(d_model: int, parametrization: str = "mup", base: int = 32, d_ff: int | None = None) -> sections.ModelSpec:
    """The tiny model at `d_model` (d_ff 3x unless given), muP's base shape at `base` (d_ff 3x)."""
    update = {"d_model": d_model, "d_ff": d_ff or 3 * d_model, "parametrization": parametrization}
    if parametrization == "mup":
        update |= {"base_d_model": base, "base_d_ff": 3 * base, "base_n_heads": TINY.model.n_heads}
    return sections.ModelSpec.model_validate(TINY.model.model_dump() | update)


def same_model(*specs: sections.ModelSpec) -> list:
    """Build and draw a model per spec, and assert they are one model: every weight and the logits equal."""
    from moesearch.ranks.model import Transformer, exact_routing, init_weights

    models = []
    for spec in specs:
        models.append(Transformer(spec, ["gelu", "swiglu"], ep_size=1).eval())
        init_weights(models[-1], spec, seed=0, first_expert=0, streams="crn")
    for (name, a), b in zip(models[0].state_dict().items(), models[1].state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    idx_BT = torch.randint(256, (2, TINY.model.seq_len), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), exact_routing(models[0]), exact_routing(models[1]):
        assert torch.equal(models[0](idx_BT)[0], models[1](idx_BT)[0])
    return models


GROWTHS = {"both 4x": (128, 384), "d_ff only": (32, 384), "d_model only": (128, 96)}


@pytest.mark.slow
@pytest.mark.parametrize("d_model, d_ff", GROWTHS.values(), ids=GROWTHS)
def test_each_parameter_follows_tensor_programs_v(one_rank, d_model, d_ff):
    """Table 3 (Adam) against the base (d_model 32, d_ff 96), each matrix's kind read off which of its
    dimensions grew, as mup's infshapes count them: both (hidden) draws at std / sqrt(m) and learns at
    lr / m with weight decay x m, m its fan-in's growth; the fan-in only (output-like: the router, an FFN
    projection whose output width is fixed) std / m and lr / m; the fan-out only or none (input-like: the
    embeddings, an FFN projection whose input width is fixed) and norms as at the base."""
    from moesearch.ranks.model import Transformer
    from moesearch.ranks.parametrization import STD, init_std, lr_mult, out_std, param_groups

    spec, base = at_width(d_model, d_ff=d_ff), at_width(32)
    model, small = (Transformer(s, ["gelu", "swiglu"], ep_size=1) for s in (spec, base))
    shapes = dict((n, p.shape) for n, p in small.named_parameters())
    group_of = {id(p): g for g in param_groups(model, spec, 1e-3, 0.1) for p in g["params"]}
    kinds = set()
    for name, p in model.named_parameters():
        group = group_of[id(p)]
        assert group["eps"] == pytest.approx(1e-8 * 32 / d_model), name
        grew_out, grew_in = (a != b for a, b in zip(p.shape, shapes[name], strict=True)) if p.dim() == 2 else (0, 0)
        if name.endswith(("embed.weight", "pos.weight")):
            grew_out, grew_in = grew_in, grew_out  # an embedding's rows are its inputs
        m = p.shape[-1] / shapes[name][-1]
        std = out_std(spec.n_layers) if name.endswith("out.weight") else STD
        kind, lr, std = {
            (True, True): ("hidden", 1e-3 / m, std / math.sqrt(m)),
            (True, False): ("output-like", 1e-3 / m, std / m),
        }.get((bool(grew_in), bool(grew_out)), ("input-like", 1e-3, std))
        assert lr_mult(name, p, spec) * 1e-3 == pytest.approx(lr), name
        assert group["lr"] == pytest.approx(lr), name
        if p.dim() == 2:
            assert init_std(name, spec) == pytest.approx(std), (name, kind)
            assert group["weight_decay"] == pytest.approx(0.1 * 1e-3 / lr), "lr x wd as at the base"
        kinds.add(kind)
    assert kinds == {"hidden", "output-like", "input-like"} - ({"hidden"} if d_model == 32 else set())
    assert model.readout_mult == 32 / d_model
    assert model.blocks[0].attn.scale == (None if d_model == 32 else pytest.approx(math.sqrt(16) / (d_model // 2)))


@pytest.mark.slow
def test_at_the_base_shape_mup_is_the_standard_model(one_rank):
    from moesearch.ranks.parametrization import param_groups

    standard, mup = at_width(32, "standard"), at_width(32, "mup")
    models = same_model(standard, mup)
    rates = [
        sorted(g["lr"] for g in param_groups(m, s, 1e-3, 0.1)) for m, s in zip(models, (standard, mup), strict=True)
    ]
    assert rates[0] == rates[1] == [1e-3, 1e-3]


@pytest.mark.slow
@pytest.mark.parametrize("d_model, d_ff", [(64, 192), (32, 192)], ids=["both 2x", "d_ff only"])
def test_per_group_rates_keep_their_ratio_through_warm_up_and_decay(one_rank, d_model, d_ff):
    """DeepSpeed's WarmupCosineLR scales each group's own rate (its schedulers that write one rate into
    every group would erase muP's): the groups' ratios hold at every step, expert groups included, also
    where only d_ff grows and the half-rate matrices are the experts' out projections alone."""

    from moesearch.ranks.train import build_engine

    spec = under(TINY, "mup").model_copy(update={"model": at_width(d_model, d_ff=d_ff)})
    cfg = RunConfig.build(spec, ["gelu", "swiglu"], seed=0, data=None, world_size=1)
    engine = build_engine(cfg, 0)
    try:
        seen = set()
        for _ in range(cfg.train.steps):
            rates = [g["lr"] for g in engine.optimizer.param_groups]
            assert len(rates) > 2, "DeepSpeed split the groups into expert and non-expert ones"
            if max(rates):  # warm-up starts at 0
                ratios = {round(r / max(rates), 6) for r in rates}
                assert ratios == {1.0, 0.5}, "hidden or output-like matrices at half the rate (2x), every step"
                seen.add(round(max(rates) / cfg.train.lr, 6))
            x = torch.randint(256, (cfg.train.micro_batch, cfg.model.seq_len))
            logits, aux, _ = engine(x)
            engine.backward(logits.float().logsumexp(-1).mean() + aux)
            engine.step()
        assert len(seen) > 3 and max(seen) > 0.9, "warm-up and decay moved the rate, through its peak"
    finally:
        engine.destroy()


@pytest.mark.slow
def test_completep_scales_residual_branches_and_epsilon_with_depth_and_is_mup_at_the_base_depth(one_rank):
    """CompleteP (alpha 1) over muP at the base width: each residual branch x base_n_layers / n_layers, the
    residual-writing matrices at the base depth's GPT-2 std (not shrunk with depth), the same learning rates,
    Adam's epsilon / m_L inside the blocks (the embedding and final norm keep muP's); at the base depth it
    builds muP's model bit for bit."""
    from moesearch.ranks.model import Transformer
    from moesearch.ranks.parametrization import init_std, out_std, param_groups

    def spec(n_layers: int, parametrization: str) -> sections.ModelSpec:
        update = {"n_layers": n_layers, "parametrization": parametrization}
        if parametrization == "completep":
            update["base_n_layers"] = 2
        return sections.ModelSpec.model_validate(TINY.model.model_dump() | update)

    deep, base = spec(8, "completep"), spec(2, "completep")
    model = Transformer(deep, ["gelu", "swiglu"] * 4, ep_size=1)
    assert {b.branch_mult for b in model.blocks} == {0.25}
    assert init_std("blocks.7.attn.out.weight", deep) == out_std(2) != out_std(8)
    assert init_std("blocks.7.attn.qkv.weight", deep) == init_std("blocks.7.attn.qkv.weight", spec(8, "standard"))
    groups = param_groups(model, deep, 1e-3, 0.1)
    assert {g["lr"] for g in groups} == {1e-3}
    eps = {id(p): g["eps"] for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        inside = name.startswith("blocks.")
        assert eps[id(p)] == pytest.approx(1e-8 / 4 if inside else 1e-8), f"{name}: / m_L inside the blocks only"
    same_model(base, spec(2, "mup"))


def test_a_ladder_under_mup_scales_from_the_proxy_shape():
    mup = under(space.load("ladder"), "mup")
    assert mup.model.base_d_model is None, "the proxy is its own base"
    w256 = mup.at_size("w256").model
    assert (w256.base_d_model, w256.base_d_ff, w256.base_n_heads) == (64, 192, 4)
    assert w256.width_mults() == (4.0, 4.0) and w256.attention_scale() == pytest.approx(math.sqrt(16) / 64)
    assert space.load("ladder").at_size("w256").model.width_mults() == (1.0, 1.0), "standard: no base shape"


@pytest.mark.parametrize("parametrization, flat", [("mup", True), ("standard", False)])
@pytest.mark.slow
def test_the_coordinate_check_is_flat_under_mup_and_grows_under_standard(tmp_path, parametrization, flat):
    """`moesearch coords` trains a real engine per width (one rank, its own process): under muP every layer's
    hidden activations keep their size from d_model 32 to 128; under standard they grow about sqrt(width)."""
    import pandas as pd
    from conftest import write_space

    body = (ROOT / "search_spaces" / "tiny.toml").read_text()
    body += (
        '\n[[scale]]\nname = "w64"\nd_model = 64\nd_ff = 192\n\n[[scale]]\nname = "w128"\nd_model = 128\nd_ff = 384\n'
    )
    path = write_space(tmp_path, body)
    out = tmp_path / "coords"
    args = ["coords", str(path), "--steps", "3", "--parametrization", parametrization, "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "coords.csv")
    assert sorted(rows["d_model"].unique()) == [32, 64, 128] and set(rows["step"]) == {0, 1, 2}
    hidden = rows[(rows["site"] == "ffn_hidden") & (rows["step"] == 2)].pivot(index="layer", columns="d_model")
    growth = hidden["value"][128] / hidden["value"][32]
    if flat:
        assert growth.between(0.8, 1.25).all(), growth
    else:
        assert (growth > 1.6).all(), growth
    assert f"{parametrization}: the largest growth" in result.output and (out / "coords.png").stat().st_size > 10_000


@pytest.mark.parametrize("name", ["tiny", "ladder-depth"], ids=["no ladder", "a ladder in depth alone"])
def test_coords_refuses_a_space_without_a_wider_size(tmp_path, name):
    """The check compares widths: a deeper size at the proxy's width would average its layers into it."""
    result = CliRunner().invoke(cli, ["coords", name, "--out", str(tmp_path / "c")])
    assert result.exit_code == 2 and f"'{name}' has no [[scale]] size wider at the proxy's depth" in result.output
    assert not (tmp_path / "c").exists()
