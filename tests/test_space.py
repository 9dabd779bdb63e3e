"""Search-space files: every shipped one validates; every kind of mistake is named on one line."""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import LADDER as TWO_SIZES
from conftest import MICRO, SPACES, write_space

from moesearch.cli import cli
from moesearch.core import sections, space
from moesearch.core.activations import ffn_params, hidden_width
from moesearch.core.costs import costs
from moesearch.core.errors import InputError
from moesearch.core.metrics import AT_RUNG, METRICS


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_space_validates(path):
    spec = space.load(path)
    assert spec.name == path.stem
    assert spec.size() >= 2
    assert spec.uniform_assignments(), "a space without uniform baselines has nothing to compare against"
    result = CliRunner().invoke(cli, ["spaces", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_the_cluster_space_s_commented_pruning_is_valid_once_uncommented(tmp_path):
    """Its comments say how to turn early stopping on: that text must stay a valid space."""
    assert space.load("cluster").search.pruning.method == "none", "shipped off (docs/performance.md section 7)"
    text = (SPACES / "cluster.toml").read_text().replace("# eval_interval = 500", "eval_interval = 500")
    head, block = text.split("# [search.pruning]")
    spec = space.load(write_space(tmp_path, head + "[search.pruning]" + block.replace("\n# ", "\n"), "cluster.toml"))
    assert (spec.search.pruning.method, spec.search.pruning.rungs, spec.train.eval_interval) == (
        "mo-asha",
        [500, 1500],
        500,
    )


def test_spaces_lists_every_shipped_space():
    listed = CliRunner().invoke(cli, ["spaces"])
    assert listed.exit_code == 0
    assert all(name in listed.output for name in space.shipped_names())


@pytest.mark.parametrize("name", space.shipped_names())
def test_spaces_show_writes_a_documented_file_that_loads_back_as_the_same_space(tmp_path, name):
    """`spaces show NAME > mine.toml` is a documented start for a space of one's own."""
    shown = CliRunner().invoke(cli, ["spaces", "show", name])
    assert shown.exit_code == 0, shown.output
    assert space.load(write_space(tmp_path, shown.output, "mine.toml")) == space.load(name)
    doc = " ".join(line.lstrip("# ") for line in shown.output.splitlines() if line.startswith("#"))
    assert sections.TrainSpec.model_fields["lr"].description in doc, "each key's meaning above it"
    assert all(f"{metric} ({unit})" in doc for metric, (unit, _) in METRICS.items()), "the objectives' names"
    assert "activations a layer may take: gelu, swiglu, geglu, reglu, relu, relu2, silu" in doc
    unset = [line for line in shown.output.splitlines() if line.endswith("  # unset; for example")]
    assert unset and all(tomllib.loads(line.removeprefix("# ")) for line in unset), "valid TOML, uncommented"


@pytest.mark.parametrize("key", ["precision", "ep_size"])
def test_an_unset_key_is_shown_as_an_example_that_sets_it_once_uncommented(tmp_path, key):
    shown = CliRunner().invoke(cli, ["spaces", "show", "default"]).output
    line = next(line for line in shown.splitlines() if line.startswith(f"# {key} = "))
    assert line.endswith("  # unset; for example")
    mine = space.load(write_space(tmp_path, shown.replace(line, line.removeprefix("# ")), "mine.toml"))
    assert mine != space.load("default"), f"{key} is set"


def test_a_per_layer_space_is_shown_with_activations_as_its_commented_alternative(tmp_path):
    from moesearch.core import space_file

    body = MICRO.replace('activations = ["gelu", "swiglu"]', 'per_layer = [["gelu", "swiglu"], ["swiglu", "relu"]]')
    spec = space.load(write_space(tmp_path, body))
    shown = space_file.documented(spec)
    assert '\n# activations = ["gelu", "swiglu"]  # unset; for example\n' in shown
    assert space.load(write_space(tmp_path, shown, "mine.toml")) == spec


def test_width_policy_makes_gated_ffns_cost_one_and_a_half():
    assert ffn_params("swiglu", 8, hidden_width("swiglu", 96, "width", 8)) == 1.5 * ffn_params("gelu", 8, 96)


def test_layer_choices_per_layer_and_baselines(tmp_path):
    body = MICRO.replace('activations = ["gelu", "swiglu"]', 'per_layer = [["gelu", "swiglu"], ["swiglu", "relu"]]')
    spec = space.load(write_space(tmp_path, body))
    assert spec.layer_choices() == [["gelu", "swiglu"], ["swiglu", "relu"]]
    assert spec.size() == 4
    assert spec.uniform_assignments() == [["swiglu", "swiglu"]]


BAD = {
    "unknown key": ("[model]\n", "[model]\nnum_expert = 4\n", "model.num_expert"),
    "unknown activation": ('"swiglu"]', '"swishglu"]', "activations.1"),
    "per-layer length": ('activations = ["gelu", "swiglu"]', 'per_layer = [["gelu"]]', "per_layer has 1 lists"),
    "unknown objective": (
        "[search]\n",
        '[search]\nobjectives = { val_loss = "minimize", speed = "maximize" }\n',
        "speed",
    ),
    "parity": ("d_ff = 96", "d_ff = 100", "d_ff 100"),
    "zero stage 3": ("[train]\n", "[train]\nzero_stage = 3\n", "train.zero_stage"),
    "not toml": ("[model]", "[model", "not valid TOML"),
    "string for a number": ("timeout_s = 300", 'timeout_s = "300"', "search.timeout_s"),
    "measured cost without a reference": (
        "[search]\n",
        '[search]\nobjectives = { val_loss = "minimize", peak_memory_mb = "minimize" }\n',
        "reference.peak_memory_mb is missing",
    ),
    "reference for a non-objective": (
        "[search]\n",
        "[search]\nreference = { params_total = 1e6 }\n",
        "reference.params_total is not an objective",
    ),
    "no MoE layer": ("[model]\n", "[model]\nmoe_every = 3\n", "moe_every 3 exceeds n_layers 2"),
    "a base depth without completep": (
        "[model]\n",
        '[model]\nparametrization = "mup"\nbase_n_layers = 2\n',
        "base_n_layers 2 is CompleteP's base depth, but parametrization is 'mup'",
    ),
    "rotary positions on an odd head width": (
        "n_heads = 2",
        'n_heads = 32\nblock = "llama"',
        "block 'llama' rotates pairs of each head's 1 dimensions; allowed: d_model / n_heads even",
    ),
    "an unknown block": ("[model]\n", '[model]\nblock = "gpt3"\n', "model.block"),
    "an effect size of no objective": (
        "[search]\n",
        "[search]\neffect_size = { params_total = 10.0 }\n",
        "effect_size.params_total is not an objective; allowed: val_loss, tokens_per_s",
    ),
    "an effect size of 0": (
        "[search]\n",
        "[search]\neffect_size = { val_loss = 0.0 }\n",
        "effect_size.val_loss 0.0 is not an effect; allowed: a number above 0",
    ),
    "negative eval interval": ("[train]\n", "[train]\neval_interval = -1\n", "train.eval_interval"),
    "infinite learning rate": ("[train]\n", "[train]\nlr = inf\n", "train.lr"),
    "nan reference": ("[search]\n", "[search]\nreference = { val_loss = nan }\n", "search.reference.val_loss"),
    "quantization objective without its evaluation": (
        "eval_sequences = 8\n[search]\n",
        'eval_sequences = 8\ndeployment_eval = false\n[search]\nobjectives = { val_loss = "minimize", '
        'quant_gap_int8 = "minimize" }\n',
        "'quant_gap_int8' is measured only with train.deployment_eval = true",
    ),
}


def test_reference_point_is_given_or_natural(tmp_path):
    from moesearch.supervisor.reference import costliest, reference_point

    body = MICRO.replace(
        "[search]\n",
        '[search]\nobjectives = { val_loss = "minimize", params_total = "minimize", '
        'peak_memory_mb = "minimize" }\nreference = { peak_memory_mb = 900.0 }\n',
    )
    spec = space.load(write_space(tmp_path, body.replace("d_ff = 96", 'd_ff = 96\nwidth_policy = "width"')))
    assert costliest(spec) == ["swiglu", "swiglu"]  # width-matched: a gated FFN has 1.5x the parameters
    most = costs(spec.model, ["swiglu", "swiglu"], spec.train.micro_batch).params_total
    assert reference_point(spec) == {
        "val_loss": pytest.approx(math.log(256)),
        "params_total": pytest.approx(1.1 * most),
        "peak_memory_mb": 900.0,
    }


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_space_is_one_line_naming_the_key(tmp_path, case):
    old, new, expected = BAD[case]
    path = write_space(tmp_path, MICRO.replace(old, new, 1))
    with pytest.raises(InputError, match=None) as err:
        space.load(path)
    assert expected in str(err.value) and str(path) in str(err.value)
    result = CliRunner().invoke(cli, ["spaces", "validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]


def test_ep_size_must_divide_experts_and_ranks(tmp_path):
    spec = space.load(write_space(tmp_path, MICRO.replace("[search]\n", "[search]\nep_size = 2\n")))
    assert spec.ep_size(2) == 2
    with pytest.raises(InputError, match=r"search.ep_size 2 .*--nproc 3"):
        spec.ep_size(3)
    assert space.load(write_space(tmp_path, MICRO, "m.toml")).ep_size(3) == 1  # default: gcd(experts, ranks)


def test_expert_parallelism_stays_inside_a_node_by_default():
    """--nproc 8 --nnodes 2 with 16 experts: ep 8 (one node's ranks), not 16 (every all-to-all across the
    network); one node alone keeps gcd(experts, ranks); a space's own ep_size may span nodes."""
    cluster = space.load("cluster")
    assert cluster.model.num_experts == 16
    assert cluster.ep_size(16, node_ranks=8) == 8
    assert cluster.ep_size(8) == 8 and cluster.ep_size(16) == 16
    spanning = cluster.model_copy(update={"search": cluster.search.model_copy(update={"ep_size": 16})})
    assert spanning.ep_size(16, node_ranks=8) == 16
    from moesearch.core.config import RunConfig

    cfg = RunConfig.build(cluster, ["gelu"] * cluster.model.n_layers, 0, None, world_size=16, node_ranks=8)
    assert cfg.ep_size == 8


def test_assignment_must_fit_the_space():
    spec = space.load("tiny")
    spec.check_assignment(["gelu", "relu2"])
    with pytest.raises(InputError, match="--layers: 3 activations given, the space has 2 layers"):
        spec.check_assignment(["gelu"] * 3)
    with pytest.raises(InputError, match="layer 1 activation 'silu' not allowed"):
        spec.check_assignment(["gelu", "silu"])


CURVES = MICRO.replace("eval_sequences = 8", "eval_sequences = 8\neval_interval = 2")  # val_loss at 2, 4 and 6
BAD_PRUNING = {
    "rungs past the last step": (CURVES, "rungs = [2, 6]", "rung 6 is not before the last step; allowed: 1 to 5"),
    "eta below 2": (CURVES, "rungs = [2]\neta = 1", "search.pruning.eta"),
    "rungs not increasing": (CURVES, "rungs = [4, 2]", "[4, 2] must be strictly increasing"),
    "no learning curves": (MICRO, "rungs = [2]", "pruning needs learning curves, but train.eval_interval is 0"),
    "rung without val_loss": (CURVES, "rungs = [3]", "rung 3 is not a multiple of train.eval_interval 2"),
    "no rungs": (CURVES, "eta = 3", "search.pruning.rungs is empty"),
    "unknown method": (CURVES, 'rungs = [2]\nmethod = "asha"', "search.pruning.method"),
}


@pytest.mark.parametrize("case", BAD_PRUNING, ids=list(BAD_PRUNING))
def test_bad_pruning_keys_are_one_line_naming_the_key(tmp_path, case):
    base, keys, expected = BAD_PRUNING[case]
    method = "" if "method" in keys else 'method = "mo-asha"\n'
    path = write_space(tmp_path, base + f"[search.pruning]\n{method}{keys}\n")
    result = CliRunner().invoke(cli, ["spaces", "validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0]


@pytest.mark.parametrize("late", sorted(set(METRICS) - AT_RUNG))
def test_pruning_on_an_objective_measured_only_at_the_end_is_refused_in_one_line(tmp_path, late):
    """The live rung would find no value to rank (KeyError, the search ends): refused before anything runs."""
    objectives = f'objectives = {{ val_loss = "minimize", {late} = "minimize" }}\nreference = {{ {late} = 1.0 }}\n'
    text = CURVES.replace("[search]\n", "[search]\n" + objectives).replace(
        "[train]\n", "[train]\ndeployment_eval = true\n"
    )
    path = write_space(tmp_path, text + '[search.pruning]\nmethod = "mo-asha"\nrungs = [2]\n')
    result = CliRunner().invoke(cli, ["spaces", "validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "search.objectives" in lines[0]
    assert f"{late!r} is measured only after the last step" in lines[0] and "allowed with pruning: val_loss" in lines[0]
    assert space.load(write_space(tmp_path, text, "off.toml")).search.objectives[late] == "minimize", "fine unpruned"


def test_the_deploy_space_with_pruning_is_refused_naming_its_quantization_gap(tmp_path):
    text = (SPACES / "deploy.toml").read_text() + '[search.pruning]\nmethod = "mo-asha"\nrungs = [125]\n'
    with pytest.raises(InputError, match="'quant_gap_int8' is measured only after the last step"):
        space.load(write_space(tmp_path, text, "deploy.toml"))


def test_good_pruning_keys_validate_and_reach_the_run_config_of_search_trials_only(tmp_path):
    from moesearch.core.config import RunConfig

    spec = space.load(write_space(tmp_path, CURVES + '[search.pruning]\nmethod = "mo-asha"\nrungs = [2, 4]\n'))
    assert spec.search.pruning.rungs == [2, 4] and spec.search.pruning.eta == 3
    assert RunConfig.build(spec, ["gelu", "swiglu"], 0, None, 2, rungs=True).rungs == (2, 4)
    assert RunConfig.build(spec, ["gelu", "swiglu"], 0, None, 2).rungs == ()
    off = space.load(write_space(tmp_path, CURVES, "off.toml"))
    assert RunConfig.build(off, ["gelu", "swiglu"], 0, None, 2, rungs=True).rungs == ()


LADDER = (
    TWO_SIZES
    + """
[[scale]]
name = "w128"
d_model = 128
n_heads = 4
d_ff = 384
num_experts = 4
steps = 24
"""
)

BAD_LADDERS = {
    "a depth that does not split into blocks": (
        'name = "w64"\n',
        'name = "w64"\nn_layers = 3\n',
        "scale.0 (w64): n_layers 3 is not a multiple of the size below's 2, so its layers do not split into blocks",
    ),
    "a depth that shrinks": (
        'name = "w64"\n',
        'name = "w64"\nn_layers = 4\n',
        "scale.1 (w128): n_layers 2, d_model 128, d_ff 384, num_experts 4 does not climb from the size below "
        "(n_layers 4,",
    ),
    "a size that shrinks": (
        "d_model = 128\n",
        "d_model = 48\n",
        "scale.1 (w128): n_layers 2, d_model 48, d_ff 384, num_experts 4 does not climb",
    ),
    "a size that stays": (
        "d_model = 64\nd_ff = 192\n",
        "",
        "scale.0 (w64): n_layers 2, d_model 32, d_ff 96, num_experts 2 does not climb",
    ),
    "heads that do not divide": (
        "n_heads = 4\n",
        "n_heads = 5\n",
        "scale.1 (w128): model: n_heads 5 must divide d_model 128",
    ),
    "a name taken": ('name = "w128"', 'name = "w64"', "scale.1 (w64): the name is taken"),
    "the proxy's name": ('name = "w64"', 'name = "proxy"', "scale.0 (proxy): the name is taken"),
    "warm-up past the end": (
        "steps = 12\n",
        "steps = 12\nwarmup_steps = 12\n",
        "scale.0 (w64): train.warmup_steps 12 must be below train.steps 12",
    ),
    "a string for a width": ("d_model = 64", 'd_model = "64"', "scale.0.d_model: Input should be a valid integer"),
    "two lengths": (
        "steps = 24\n",
        'steps = 24\ntokens = "per_param"\n',
        "steps 24 and tokens 'per_param' both set the length; allowed: one of them",
    ),
    "an unknown token rule": (
        'name = "w64"\n',
        'name = "w64"\ntokens = "chinchilla"\n',
        "scale.0.tokens: Input should be",
    ),
}


def test_a_size_may_train_as_many_tokens_per_parameter_as_the_proxy(tmp_path):
    """tokens = "per_param": the proxy's steps and warm-up times the ratio of active parameters (the first
    activation everywhere); "fixed" (the default) keeps them."""
    from moesearch.core.costs import costs

    spec = space.load(write_space(tmp_path, LADDER.replace("steps = 24\n", 'tokens = "per_param"\n')))
    proxy, w64, w128 = (spec.at_size(n) for n in spec.sizes())
    assert (proxy.train.steps, w64.train.steps) == (6, 12), "fixed: its own steps, as set"

    def active(s):
        return costs(s.model, [c[0] for c in s.layer_choices()], s.train.micro_batch).params_active

    ratio = active(w128) / active(proxy)
    assert ratio > 2 and w128.train.steps == round(proxy.train.steps * ratio)
    assert w128.train.warmup_steps == round(proxy.train.warmup_steps * ratio)


def test_a_ladder_validates_and_gives_each_size_as_a_space(tmp_path):
    spec = space.load(write_space(tmp_path, LADDER))
    assert spec.sizes() == ["proxy", "w64", "w128"]
    assert spec.at_size("proxy") == spec.model_copy(update={"scale": []})
    w128 = spec.at_size("w128")
    assert (w128.model.d_model, w128.model.n_heads, w128.model.d_ff, w128.model.num_experts) == (128, 4, 384, 4)
    assert (w128.model.n_layers, w128.train.steps, w128.train.micro_batch) == (2, 24, 4), "unset keys: the proxy's"
    assert w128.scale == [] and w128.layer_choices() == spec.layer_choices()
    shown = CliRunner().invoke(cli, ["spaces", "show", str(tmp_path / "space.toml")])
    assert shown.output.splitlines().count("[[scale]]") == 2
    assert space.load(write_space(tmp_path, shown.output, "mine.toml")) == spec, "a ladder shows and loads back"
    with pytest.raises(InputError, match="--size: 'w512' is not a size of space 'micro'; allowed: proxy, w64, w128"):
        spec.at_size("w512")


def test_a_deeper_size_deepens_each_layer_s_choices_over_its_block_and_scales_from_the_proxy(tmp_path):
    """Proxy layer i stands for the layers j with j * n_proxy // n_size == i; CompleteP's base depth is the
    proxy's; a deeper size queues no design of its own (promote trains the proxy's assignments deepened)."""
    from moesearch.core.assignment import block_of, deepen, shallow

    assert [block_of(j, 8, 4) for j in range(8)] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert deepen(["gelu", "swiglu"], 6).text == "gelu,gelu,gelu,swiglu,swiglu,swiglu"
    assert shallow(deepen(["relu", "gelu", "swiglu"], 9), 3).text == "relu,gelu,swiglu"
    assert shallow(["gelu", "swiglu", "gelu", "gelu"], 2) is None, "a block that mixes stands for no layer"
    assert shallow(["gelu", "gelu", "gelu"], 2) is None, "3 layers do not split into 2 blocks"
    deeper = LADDER.replace('name = "w64"\n', 'name = "w64"\nn_layers = 4\n').replace(
        'name = "w128"\n', 'name = "w128"\nn_layers = 8\n'
    )
    deeper = deeper.replace('activations = ["gelu", "swiglu"]', 'per_layer = [["gelu", "swiglu"], ["gelu"]]')
    deeper = deeper.replace("[model]\n", '[model]\nparametrization = "completep"\n', 1)
    spec = space.load(write_space(tmp_path, deeper))
    w128 = spec.at_size("w128")
    assert w128.layer_choices() == [["gelu", "swiglu"]] * 4 + [["gelu"]] * 4
    assert (w128.model.base_n_layers, w128.model.depth_mult(), w128.search.design) == (2, 4.0, "none")
    assert spec.at_size("w64").model.depth_mult() == 2.0 and spec.model.depth_mult() == 1.0


def test_a_ladder_that_grows_in_depth_keeps_every_layer_moe(tmp_path):
    deeper = LADDER.replace('name = "w64"\n', 'name = "w64"\nn_layers = 4\n').replace(
        "[model]\n", "[model]\nmoe_every = 2\n", 1
    )
    result = CliRunner().invoke(cli, ["spaces", "validate", str(write_space(tmp_path, deeper))])
    assert result.exit_code == 2
    assert "scale.0 (w64): n_layers 4 changes the depth, but model.moe_every is 2" in result.output
    assert "allowed: moe_every = 1" in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("case", BAD_LADDERS, ids=list(BAD_LADDERS))
def test_a_bad_ladder_is_one_line_naming_the_size(tmp_path, case):
    old, new, expected = BAD_LADDERS[case]
    assert old in LADDER
    path = write_space(tmp_path, LADDER.replace(old, new, 1))
    result = CliRunner().invoke(cli, ["spaces", "validate", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], lines


@pytest.mark.slow
def test_a_wheel_install_ships_every_space(tmp_path):
    """`pip install .` (not editable) carries the shipped spaces as package data: built into a wheel, installed
    apart from this checkout, run from elsewhere."""
    import subprocess
    import sys

    from conftest import ROOT

    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)], check=True)
    (wheel,) = (tmp_path / "dist").glob("moesearch-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True)
    shown = subprocess.run(
        [sys.executable, "-m", "moesearch", "spaces"],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert all(name in shown.stdout for name in space.shipped_names())
    located = subprocess.run(
        [sys.executable, "-c", "from moesearch.core import space; print(space.SHIPPED_DIR)"],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert located.stdout.strip().startswith(str(tmp_path / "site")), "the wheel's own copy, not this checkout's"


@pytest.mark.parametrize("n", [5_000, 819_199, 1_000_003, 20 * 4096, 20 * 4096 * 10 + 5])
def test_the_corpus_parts_are_views_that_cut_the_same_windows_as_the_split_by_index(n):
    """The same split as an index per byte gave (the records' text stays comparable): every 20th block held
    out, the last block possibly short, and a window of a part is the same bytes as from a copied part."""
    import numpy as np

    from moesearch.core import corpus

    stream = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
    block = max(1, min(4096, n // 200))
    held = np.arange(n) // block % 20 == 19  # the reference: a block index per byte
    for part, reference in (
        (corpus.Part(stream, block, False), stream[~held]),
        (corpus.Part(stream, block, True), stream[held]),
    ):
        assert len(part) == len(reference)
        starts = np.random.default_rng(1).integers(0, len(reference) - 65, 200)
        starts = np.concatenate([starts, [0, len(reference) - 65]])  # both ends
        expected = np.stack([reference[s : s + 65] for s in starts])
        assert np.array_equal(part.windows(starts, 65), expected)
    assert 0.04 < held.mean() < 0.06


def anonymous_memory() -> int:
    """This process's resident anonymous memory (bytes): what it owns, beside file pages the kernel may drop
    and every rank mapping the same file shares."""
    (line,) = [line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("RssAnon:")]
    return int(line.split()[1]) << 10


def test_a_large_corpus_costs_shared_file_pages_not_memory_of_its_own(tmp_path, monkeypatch):
    """128 MB of text: made into the cache in chunks and mapped; loading it and cutting windows adds far less
    than its size to the process's own memory (before: 3 bytes per byte while split, 1 per rank after)."""
    import numpy as np

    from moesearch.core import corpus

    monkeypatch.setenv("MOESEARCH_CACHE", str(tmp_path / "cache"))
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        for i in range(128):
            f.write(np.random.default_rng(i).integers(32, 127, 1 << 20, dtype=np.uint8).tobytes())
    before = anonymous_memory()
    loaded = corpus.load(str(big))
    windows = loaded.train.windows(np.arange(0, len(loaded.train) - 257, len(loaded.train) // 64), 257)
    grown = anonymous_memory() - before
    assert windows.shape == (64, 257) and len(loaded.train) + len(loaded.val) == 128 << 20
    assert Path(loaded.train.stream.filename) == big and not list((tmp_path / "cache").glob("*.u8")), (
        "one file is mapped where it is, not copied"
    )
    assert grown < 32 << 20, f"loading 128 MB grew the process's own memory by {grown >> 20} MB"


def test_the_corpus_is_memory_mapped_from_a_cache_made_once_and_remade_when_a_file_changes(tmp_path, monkeypatch):
    import numpy as np

    from moesearch.core import corpus

    monkeypatch.setenv("MOESEARCH_CACHE", str(tmp_path / "cache"))
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_bytes(b"alpha " * 5000)
    (text / "b.txt").write_bytes(b"beta " * 5000)
    first = corpus.load(str(text))
    assert isinstance(first.train.stream, np.memmap), "pages, not a copy"
    joined = (text / "a.txt").read_bytes() + b"\n" + (text / "b.txt").read_bytes()
    assert bytes(first.train.stream) == joined
    assert first.sha256 == __import__("hashlib").sha256(joined.replace(b"\n", b"", 1)).hexdigest()
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 1
    assert corpus.load(str(text)).sha256 == first.sha256 and len(list((tmp_path / "cache").glob("*.u8"))) == 1
    (text / "b.txt").write_bytes(b"gamma " * 5000)
    changed = corpus.load(str(text))
    assert changed.sha256 != first.sha256 and bytes(changed.val.stream).endswith(b"gamma ")
