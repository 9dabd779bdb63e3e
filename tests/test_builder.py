"""`model.builder`: a model of one's own built with moesearch's FFN/MoE factory, trained through the real CLI
with two gloo ranks; the shipped blocks come the same way; a builder that cannot load or breaks the contract
is refused in one line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import MICRO, ROOT, run_cli, write_space

from moesearch.cli import cli
from moesearch.core import results, sections, space
from moesearch.core.builders import BuilderError
from moesearch.core.costs import costs

PARALLEL = MICRO.replace("[model]\n", '[model]\nbuilder = "builders:parallel"\n')
ON_PATH = {"PYTHONPATH": str(ROOT / "tests")}  # where the ranks import tests/builders.py from


@pytest.mark.slow
def test_a_model_of_one_s_own_trains_through_the_cli_with_its_parameters_counted(tmp_path):
    path = write_space(tmp_path, PARALLEL)
    done = run_cli(
        "train",
        str(path),
        "--nproc",
        "2",
        "--layers",
        "swiglu,gelu",
        "--results",
        str(tmp_path),
        "--no-progress",
        env=ON_PATH,
    )
    assert done.returncode == 0, done.stderr
    row = results.load_trials(tmp_path, "micro").iloc[0]
    assert row["state"] == "COMPLETE" and row["val_loss"] < 5.6, "it learned something (ln 256 = 5.55)"
    assert '"builder":"builders:parallel"' in row["config_json"].replace(" ", "")
    shipped = costs(
        space.load(path).model.model_copy(update={"builder": sections.SHIPPED_BUILDER}), ["swiglu", "gelu"], 4
    )
    assert 0 < row["params_total"] != shipped.params_total, "counted from its own module, not the shipped formula"
    assert row["params_active"] < row["params_total"] and row["train_flops_per_token"] != row["train_flops_per_token"]


@pytest.mark.slow
@pytest.mark.parametrize("layers", [("swiglu", "relu2"), ("gelu+swiglu", "relu2"), ("gelu*3+swiglu", "relu2")])
def test_the_shipped_blocks_counted_as_a_model_of_one_s_own_give_their_formulas(one_rank, layers):
    """`builder.counted`'s count, on the shipped model, equals core/costs.py's parameters and the module's
    own (one rank holds every expert): a mix's experts each at their own size (width-matched: SwiGLU's 1.5x)."""
    from moesearch.ranks import builder
    from moesearch.ranks.model import mix_experts, transformer

    for block in ("gpt2", "llama"):
        spec = space.load("tiny").model.model_copy(update={"block": block, "width_policy": "width", "num_experts": 4})
        model = builder.build(spec, layers, ep_size=1)
        mix_experts(model, spec, layers, 0)
        assert type(model) is type(transformer(spec, ("gelu", "gelu"), 1))
        own = builder.counted(model, spec.model_copy(update={"builder": "builders:parallel"}), layers, 4)
        formula = costs(spec, list(layers), 4)
        assert (own.params_total, own.params_active) == (formula.params_total, formula.params_active)
        assert own.params_total == sum(p.numel() for p in model.parameters()), "every expert, as built"
        assert own.train_flops_per_token is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("own_ffn", "block 0's `ffn` is not moesearch.ranks.model.ffn_layer"),
        ("wide_ffn", r"block 0's gelu FFN has 12288 parameters, not the 6144 of ffn_layer's \(d_model 32, hidden 96\)"),
    ],
)
def test_a_module_that_breaks_the_contract_is_named(one_rank, tmp_path, monkeypatch, name, said):
    from moesearch.ranks import builder

    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    spec = space.load(write_space(tmp_path, PARALLEL.replace("builders:parallel", f"builders:{name}"))).model
    with pytest.raises(BuilderError, match=said):
        builder.build(spec, ("gelu", "gelu"), ep_size=1)


REFUSED = {
    "a module that does not import": (
        "builders:parallel",
        "nowhere_module:build",
        "model.builder 'nowhere_module:build': module 'nowhere_module' does not import",
    ),
    "a name that is not a function": (
        "builders:parallel",
        "builders:NOT_A_FUNCTION",
        "model.builder 'builders:NOT_A_FUNCTION': builders has no function 'NOT_A_FUNCTION'",
    ),
    "not module:function": ("builders:parallel", "builders.parallel", "model.builder: String should match pattern"),
    "muP without the shipped blocks": (
        "[model]\n",
        '[model]\nparametrization = "mup"\n',
        "model.parametrization 'mup': its readout, attention and branch multipliers live in the shipped blocks'",
    ),
    "FLOPs of an unknown model": (
        "[search]\n",
        '[search]\nobjectives = { val_loss = "minimize", train_flops_per_token = "minimize" }\n',
        "search.objectives: 'train_flops_per_token' is known only for the shipped blocks",
    ),
    "parameters without a reference": (
        "[search]\n",
        '[search]\nobjectives = { val_loss = "minimize", params_total = "minimize" }\n',
        "reference.params_total is missing: with model.builder 'builders:parallel'",
    ),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_a_builder_that_cannot_serve_is_refused_in_one_line_before_anything_starts(tmp_path, monkeypatch, case):
    old, new, expected = REFUSED[case]
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    path = write_space(tmp_path, PARALLEL.replace(old, new, 1))
    result = CliRunner().invoke(cli, ["train", str(path), "--layers", "gelu,gelu", "--results", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert not (tmp_path / "r").exists()
