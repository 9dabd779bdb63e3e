"""Common random numbers: assignments that differ in one layer are the same model everywhere else at step 0."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import ROOT, free_port

from moesearch.core import space
from moesearch.core.config import RunConfig
from moesearch.ranks import streams

TINY = space.load("tiny")
# Pairs that differ in one layer (the changed layer, then the two assignments); tiny's layers are both MoE
PAIRS = [(1, "gelu,gelu", "gelu,swiglu"), (0, "relu2,swiglu", "swiglu,swiglu"), (1, "swiglu,relu2", "swiglu,gelu")]


def _space(scheme: str, width_policy: str) -> space.Space:
    return TINY.model_copy(
        update={
            "train": TINY.train.model_copy(update={"streams": scheme}),
            "model": TINY.model.model_copy(update={"width_policy": width_policy}),
        }
    )


def _step0(scheme: str, layers: str, width_policy: str = "params") -> dict[str, torch.Tensor]:
    from moesearch.ranks.train import build_model

    cfg = RunConfig.build(_space(scheme, width_policy), layers.split(","), seed=3, data=None, world_size=1)
    return build_model(cfg, rank=0).state_dict()


def _outside(state: dict[str, torch.Tensor], layer: int) -> dict[str, torch.Tensor]:
    """Every weight but the experts of `layer` (the part an activation changes)."""
    return {k: v for k, v in state.items() if not k.startswith(f"blocks.{layer}.ffn.deepspeed_moe.experts.")}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_a_stream_depends_on_its_seed_and_place_only():
    assert streams.seed_of(3, "blocks.0.attn.qkv.weight") == streams.seed_of(3, "blocks.0.attn.qkv.weight")
    assert (
        len(
            {
                streams.seed_of(3, "a"),
                streams.seed_of(4, "a"),
                streams.seed_of(3, "b"),
                streams.seed_of(3, "expert", 0, 1),
                streams.seed_of(3, "expert", 1, 0),
            }
        )
        == 5
    )
    # stable across processes (a string's hash() is salted per process)
    code = "from moesearch.ranks.streams import seed_of; print(seed_of(3, 'a'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert int(other.stdout) == streams.seed_of(3, "a")


@pytest.mark.parametrize("width_policy", ["params", "width"])
@pytest.mark.parametrize(("layer", "a", "b"), PAIRS)
@pytest.mark.slow
def test_one_layer_changed_leaves_every_other_weight_identical_on_one_rank(one_rank, layer, a, b, width_policy):
    first, second = _step0("crn", a, width_policy), _step0("crn", b, width_policy)
    assert _same(_outside(first, layer), _outside(second, layer)) == []
    assert any(k.startswith(f"blocks.{1 - layer}.ffn.deepspeed_moe.experts.") for k in _outside(first, layer))


@pytest.mark.slow
def test_one_global_generator_redraws_the_rest_of_the_model(one_rank):
    """The scheme records before schema 4 used: a layer whose FFN has another size moves every later draw
    (tiny matches parameters, so its gated FFN draws as many values: widths as hard8 and default have)."""
    layer, a, b = PAIRS[0]
    assert _same(_outside(_step0("global", a, "width"), layer), _outside(_step0("global", b, "width"), layer))


@pytest.mark.slow
def test_the_same_assignment_and_seed_is_drawn_the_same_under_both_schemes_each_time(one_rank):
    for scheme in ("crn", "global"):
        assert _same(_step0(scheme, "gelu,swiglu"), _step0(scheme, "gelu,swiglu")) == []
    assert _same(_step0("crn", "gelu,swiglu"), _step0("global", "gelu,swiglu")), "the schemes differ"


@pytest.mark.slow
def test_one_layer_changed_leaves_every_other_weight_identical_on_two_ranks(tmp_path):
    """Two gloo ranks, expert-parallel over both, after deepspeed.initialize: what the trainer starts from."""
    layer, a, b = PAIRS[0]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
        str(ROOT / "tests" / "step0_weights.py"),
        str(tmp_path),
        "crn",
        a,
        b,
    ]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**__import__("os").environ, "DS_ACCELERATOR": "cpu"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    on = {(i, r): torch.load(tmp_path / f"{i}-rank{r}.pt") for i in (0, 1) for r in (0, 1)}
    for rank in (0, 1):
        assert _same(_outside(on[0, rank], layer), _outside(on[1, rank], layer)) == []
    # each rank holds its own expert of the two; the dense weights are the same on both and as on one rank
    dense = [k for k in on[0, 0] if ".experts." not in k]
    assert all(torch.equal(on[0, 0][k], on[0, 1][k]) for k in dense)
    one = _step0("crn", a)
    assert all(torch.equal(on[0, 0][k], one[k]) for k in dense)
    expert = f"blocks.{1 - layer}.ffn.deepspeed_moe.experts.deepspeed_experts.0.w_in.weight"
    assert not torch.equal(on[0, 0][expert], on[0, 1][expert]), "rank 1's local expert 0 is global expert 1"
    assert torch.equal(on[0, 1][expert], one[expert.replace("deepspeed_experts.0", "deepspeed_experts.1")])
