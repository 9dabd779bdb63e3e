"""The model and trainer in this process, on a real one-rank gloo group and real DeepSpeed engines."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from moesearch.core import corpus, space
from moesearch.core.activations import NAMES
from moesearch.core.config import RunConfig
from moesearch.core.costs import costs, expert_capacity
from moesearch.core.metrics import METRICS
from moesearch.supervisor.stability import stability

TINY = space.load("tiny")


@pytest.fixture(scope="module")
def text():
    return corpus.load(None)


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.slow
def test_every_activation_runs_forward_and_backward(one_rank, activation):
    from moesearch.ranks.model import Transformer

    torch.manual_seed(0)
    model = Transformer(TINY.model, [activation, "gelu"], ep_size=1)
    idx_BT = torch.randint(256, (2, TINY.model.seq_len))
    logits_BTV, aux, counts = model(idx_BT)
    assert logits_BTV.shape == (2, TINY.model.seq_len, 256)
    assert len(counts) == 2 and aux.item() > 0
    loss = torch.nn.functional.cross_entropy(logits_BTV.flatten(0, 1), idx_BT.flatten()) + aux
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "blocks.0" in n and "experts" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("activation", NAMES)
@pytest.mark.parametrize("block", ["gpt2", "llama"])
@pytest.mark.slow
def test_analytic_params_match_the_model(one_rank, activation, block):
    from moesearch.ranks.model import Transformer

    layers = [activation, "gelu"]
    spec = TINY.model.model_copy(update={"block": block})
    model = Transformer(spec, layers, ep_size=1)  # one rank holds every expert
    assert sum(p.numel() for p in model.parameters()) == costs(spec, layers, 4).params_total


@pytest.mark.slow
def test_the_llama_block_rotates_queries_and_keys_so_attention_sees_distance_only(one_rank):
    """Rotary positions: a rotated query-key product is the same for every pair the same distance apart;
    the block has RMSNorms and no position table, and trains forward and backward."""
    from moesearch.ranks.model import Rotary, Transformer

    rotary = Rotary(d_head=8, seq_len=16)
    q, k = torch.randn(8, generator=torch.Generator().manual_seed(0)), torch.randn(8)
    same = q.expand(1, 1, 16, 8), k.expand(1, 1, 16, 8)
    scores_TT = rotary(same[0])[0, 0] @ rotary(same[1])[0, 0].T
    assert torch.allclose(scores_TT[5, 2], scores_TT[12, 9], atol=1e-5) and not torch.allclose(
        scores_TT[5, 2], scores_TT[5, 4], atol=1e-3
    )
    model = Transformer(TINY.model.model_copy(update={"block": "llama"}), ["swiglu", "gelu"], ep_size=1)
    assert model.pos is None and isinstance(model.norm, torch.nn.RMSNorm)
    idx_BT = torch.randint(256, (2, TINY.model.seq_len))
    logits_BTV, aux, _ = model(idx_BT)
    (torch.nn.functional.cross_entropy(logits_BTV.flatten(0, 1), idx_BT.flatten()) + aux).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_params_policy_gives_equal_parameter_counts_across_activations():
    assert any(space.load(n).model.width_policy == "params" for n in space.shipped_names())
    for spec in (space.load(n) for n in space.shipped_names()):
        if spec.model.width_policy != "params":
            continue
        counts = {costs(spec.model, [a] * spec.model.n_layers, spec.train.micro_batch).params_total for a in NAMES}
        assert max(counts) / min(counts) - 1 < 0.01, spec.name


@pytest.mark.slow
def test_experts_start_different(one_rank):
    from moesearch.ranks.model import Transformer, init_weights, moe_layers

    model = Transformer(TINY.model, ["gelu", "swiglu"], ep_size=1)
    init_weights(model, TINY.model, seed=0, first_expert=0, streams="crn")
    for _, moe in moe_layers(model):
        a, b = (e.w_in.weight for e in moe.deepspeed_moe.experts.deepspeed_experts)
        assert not torch.equal(a, b)


@pytest.mark.slow
def test_a_trial_trains_and_reports_every_metric(one_rank, text):
    from moesearch.ranks.train import train_trial

    cfg = RunConfig.build(TINY, ["swiglu", "relu2"], seed=1, data=None, world_size=1)
    reported = []
    result = train_trial(cfg, text, on_step=lambda step, loss, val_loss: reported.append((step, loss, val_loss)))
    metrics, steps, layers = result.metrics, result.steps, result.layers
    assert set(METRICS) - set(stability([], 1.0)) <= metrics.keys(), "the supervisor adds stability from the steps"
    assert metrics["precision"] == "fp32", "the CPU default"
    seen = [loss for _, loss, _ in reported]
    assert len(seen) == TINY.train.steps and seen[-1] < seen[0]
    evaluated = {step: val for step, _, val in reported if val is not None}
    assert evaluated == {s["step"]: s["val_loss"] for s in steps[:-1] if s["val_loss"] is not None}
    assert list(evaluated) == [4, 8], "each periodic evaluation with its step (the last step's comes after the loop)"
    assert 0 < metrics["step_time_s"] < metrics["train_time_s"] / (TINY.train.steps / 2)
    assert metrics["val_loss"] < math.log(256)  # learnt something beyond uniform bytes
    assert metrics["tokens_per_s"] > 0 and metrics["peak_memory_mb"] > 0
    assert metrics["params_total"] == costs(TINY.model, cfg.layers, 4).params_total
    # one row per step, val_loss every eval_interval steps and at the end
    assert [r["step"] for r in steps] == list(range(1, TINY.train.steps + 1))
    assert [r["train_loss"] for r in steps] == seen
    assert [r["step"] for r in steps if r["val_loss"] is not None] == [4, 8, 12]
    assert steps[-1]["val_loss"] == metrics["val_loss"] and steps[-1]["tokens"] == 12 * 4 * 32
    assert max(r["lr"] for r in steps) == pytest.approx(TINY.train.lr, rel=0.05)
    # one row per layer, with routing and hidden statistics
    assert [(r["layer"], r["activation"], r["moe"]) for r in layers] == [(0, "swiglu", True), (1, "relu2", True)]
    assert all(sum(r["expert_load"]) == pytest.approx(1) and r["load_balance"] >= 1 for r in layers)
    assert layers[1]["hidden_zero_frac"] > 0.2, "squared ReLU zeroes about half its hidden units"
    assert layers[0]["hidden_zero_frac"] == 0 and layers[0]["hidden_std"] > 0


@pytest.mark.slow
def test_gradient_norms_are_recorded_as_deepspeed_reports_them(one_rank, text, monkeypatch):
    from deepspeed import DeepSpeedEngine

    from moesearch.ranks.train import train_trial

    reported = []
    original = DeepSpeedEngine.get_global_grad_norm
    monkeypatch.setattr(
        DeepSpeedEngine, "get_global_grad_norm", lambda engine: reported.append(original(engine)) or reported[-1]
    )
    cfg = RunConfig.build(TINY, ["gelu", "swiglu"], seed=0, data=None, world_size=1)
    steps = train_trial(cfg, text).steps
    assert [r["grad_norm"] for r in steps] == [float(n) for n in reported] and len(reported) == TINY.train.steps
    assert all(n > 0 for n in reported)
    metrics = stability(steps, grad_clip=min(reported) * 1.01)
    assert metrics["max_grad_norm"] == max(reported) and 0 < metrics["clipped_share"] < 1


@pytest.mark.slow
def test_a_bf16_trial_trains_on_cpu_in_bf16(one_rank, text):
    from moesearch.ranks.train import train_trial

    spec = TINY.model_copy(update={"train": TINY.train.model_copy(update={"precision": "bf16"})})
    result = train_trial(RunConfig.build(spec, ["swiglu", "gelu"], seed=0, data=None, world_size=1), text)
    assert result.metrics["precision"] == "bf16" and result.metrics["val_loss"] < math.log(256)
    assert all(math.isfinite(r["grad_norm"]) for r in result.steps)


@pytest.mark.slow
def test_same_seed_same_result_and_engines_do_not_leak(one_rank, text):
    import gc

    from moesearch.ranks.train import train_trial

    cfg = RunConfig.build(TINY, ["gelu", "gelu"], seed=3, data=None, world_size=1)
    first = train_trial(cfg, text).metrics["val_loss"]
    assert train_trial(cfg, text).metrics["val_loss"] == pytest.approx(first, abs=1e-6)
    gc.collect()
    import deepspeed

    assert not [o for o in gc.get_objects() if isinstance(o, deepspeed.DeepSpeedEngine)]


@pytest.mark.slow
def test_nan_loss_fails_the_trial_at_its_step(one_rank, text, monkeypatch):
    from moesearch.ranks.train import TrialFailed, train_trial

    monkeypatch.setenv("MOESEARCH_FAULT", "nan:relu2,relu2")
    cfg = RunConfig.build(TINY, ["relu2", "relu2"], seed=0, data=None, world_size=1)
    with pytest.raises(TrialFailed, match="non-finite loss at step 1") as failed:
        train_trial(cfg, text)
    assert [r["step"] for r in failed.value.steps] == [1], "the steps before the failure are kept"


@pytest.mark.parametrize("moe_every", [1, 3])  # every FFN an MoE; no MoE at all (two dense layers)
@pytest.mark.slow
def test_hidden_statistics_count_real_tokens_only(one_rank, moe_every):
    from moesearch.ranks.model import Transformer
    from moesearch.ranks.probes import HiddenStats

    # a large capacity leaves most expert slots empty: padding must not count as zeros
    spec = TINY.model.model_copy(update={"moe_every": moe_every, "capacity_factor": 4.0, "eval_capacity_factor": 4.0})
    torch.manual_seed(0)
    model = Transformer(spec, ["gelu", "relu"], ep_size=1).eval()
    idx_BT = torch.randint(256, (2, spec.seq_len))
    with torch.no_grad(), HiddenStats(model, 0, spec.num_experts) as probe:
        model(idx_BT)
    tokens = idx_BT.numel() * (spec.top_k if moe_every == 1 else 1)
    counted = probe.sums_LES[:, :, 0].sum(dim=1).tolist()
    assert counted == [tokens * spec.d_ff] * 2, "every routed token's hidden units, once"
    gelu, relu = probe.reduce(torch.device("cpu"))
    assert gelu["hidden_zero_frac"] == 0
    assert 0.3 < relu["hidden_zero_frac"] < 0.7 and relu["hidden_near_zero_frac"] >= relu["hidden_zero_frac"]
    assert relu["hidden_mean"] > 0 and gelu["hidden_std"] > 0
    model(idx_BT)
    assert probe.sums_LES[:, :, 0].sum(dim=1).tolist() == counted, "hooks are gone after the with block"


@pytest.mark.parametrize(
    "experts, top_k, factor, tokens",
    [(2, 1, 1.1, 800), (4, 2, 1.25, 1024), (8, 2, 1.0, 4096), (16, 2, 1.25, 8192), (6, 3, 0.7, 999)],
)
def test_expert_capacity_matches_deepspeeds_gate(experts, top_k, factor, tokens):
    from deepspeed.moe.sharded_moe import _capacity

    spec = TINY.model.model_copy(update={"num_experts": experts, "top_k": top_k, "capacity_factor": factor})
    gates = torch.empty(tokens, experts)
    expected = _capacity(gates, torch.tensor(factor * top_k), torch.tensor(spec.min_capacity)).item()
    assert expert_capacity(spec, tokens) == expected


@pytest.mark.slow
def test_dense_weights_do_not_depend_on_the_expert_parallel_size(one_rank):
    from moesearch.ranks.model import Transformer, init_weights

    spec = TINY.model.model_copy(update={"num_experts": 4})
    states = []
    for ep_size in (1, 2):  # 2: two of the four experts on this rank
        for streams in ("crn", "global"):
            torch.manual_seed(0)
            model = Transformer(spec, ["gelu", "swiglu"], ep_size=ep_size)
            init_weights(model, spec, seed=0, first_expert=0, streams=streams)
            states.append(model.state_dict())
    all_local, global_all, half_local, global_half = states
    dense = [k for k in all_local if "experts" not in k]
    assert all(torch.equal(all_local[k], half_local[k]) for k in dense)
    assert all(torch.equal(global_all[k], global_half[k]) for k in dense)


def test_width_policy_costs_gated_layers_more():
    spec = space.load("default")
    assert spec.model.width_policy == "width"
    by_swiglu_layers = [
        costs(spec.model, ["swiglu"] * n + ["gelu"] * (4 - n), 8).train_flops_per_token for n in range(5)
    ]
    m = spec.model  # every layer is MoE: each SwiGLU adds its third matrix in all E capacity-padded expert buffers
    extra = 3 * 2 * m.d_model * m.d_ff * m.num_experts * expert_capacity(m, 8 * m.seq_len) / (8 * m.seq_len)
    steps = [b - a for a, b in itertools.pairwise(by_swiglu_layers)]
    assert steps == pytest.approx([extra] * 4, abs=1), "every SwiGLU layer adds the same, positive cost"


@pytest.mark.slow
def test_outlier_statistics_of_a_tensor_with_known_outliers(one_rank):
    """A dense FFN whose hidden activation is a known tensor: 1000 values of +-1 and two of +-50."""
    from moesearch.ranks.model import Transformer
    from moesearch.ranks.probes import HiddenStats, TailShare

    spec = TINY.model.model_copy(update={"moe_every": 3, "n_layers": 1})  # one dense layer
    model = Transformer(spec, ["relu"], ep_size=1).eval()
    h_NF = torch.cat([torch.ones(500), -torch.ones(500), torch.tensor([50.0, -50.0])]).view(1, -1)
    ffn = model.blocks[0].ffn
    with torch.no_grad(), HiddenStats(model) as probe:
        probe._note_rows(ffn, (torch.ones(1, 4),))
        probe._add(0, 0, h_NF.double())
        whole = probe.reduce(torch.device("cpu"))[0]
    values = h_NF.double().flatten()
    rms = values.square().mean().sqrt().item()
    kurtosis = ((values - values.mean()) ** 4).mean() / values.var(unbiased=False) ** 2 - 3
    assert whole["hidden_abs_max"] == 50 and whole["hidden_max_over_rms"] == pytest.approx(50 / rms)
    assert whole["hidden_excess_kurtosis"] == pytest.approx(kurtosis.item()) and whole["hidden_excess_kurtosis"] > 100
    with TailShare(model, probe.mean_std()) as tails:
        tails._add(0, 0, h_NF.double())
        share = tails.reduce(torch.device("cpu"))[0]["hidden_beyond_6sd_frac"]
    assert share == pytest.approx(2 / 1002), "exactly the two outliers lie beyond 6 standard deviations"


def test_int8_of_a_known_tensor_has_the_known_scale_zero_point_and_values():
    from moesearch.ranks.quantize import fake_int8, int8_affine_params, int8_sym_params

    assert int8_affine_params(0.0, 2.55) == (pytest.approx(0.01), -128), "one-sided: min is code -128"
    assert int8_affine_params(-1.0, 3.0) == (pytest.approx(4 / 255), -64), "-1 / (4/255) = -63.75: zero at -128 + 64"
    assert int8_sym_params(-1.0, 2.54) == (pytest.approx(0.02), 0)
    x = torch.tensor([-0.5, 0.0, 0.004, 0.006, 1.234, 2.55, 3.0])
    affine = fake_int8(x, 0.01, -128, symmetric=False)
    assert torch.allclose(affine, torch.tensor([0.0, 0.0, 0.0, 0.01, 1.23, 2.55, 2.55]), atol=1e-6), (
        "clamped to [0, 2.55]"
    )
    x = torch.tensor([-3.0, -2.54, -0.011, 0.009, 0.011, 2.55])
    symmetric = fake_int8(x, 0.02)
    assert torch.allclose(symmetric, torch.tensor([-2.54, -2.54, -0.02, 0.0, 0.02, 2.54]), atol=1e-6), (
        "codes [-127, 127]: -3 stops at -2.54, not -2.56"
    )


def test_affine_int8_gives_a_one_sided_tensor_every_code_and_symmetric_half():
    from moesearch.ranks.quantize import quantizer

    relu_like = torch.linspace(0, 1, 10_001)
    two_sided = torch.linspace(-1, 1, 10_001)
    assert quantizer("int8", 0.0, 1.0)(relu_like).unique().numel() == 256
    assert quantizer("int8_sym", 0.0, 1.0)(relu_like).unique().numel() == 128, "codes 0..127 only"
    assert quantizer("int8_sym", -1.0, 1.0)(two_sided).unique().numel() == 255, "what a two-sided tensor gets"


def test_fp8_rounds_to_e4m3_s_grid_and_saturates():
    from moesearch.ranks.quantize import fake_fp8

    # E4M3 keeps 3 mantissa bits: steps of 1/8 in [1, 2), of 2 in [16, 32); 448 is its largest value
    x = torch.tensor([1.06, 1.07, 17.5, 300.0, 1e6])
    assert fake_fp8(x, 1.0).tolist() == [1.0, 1.125, 18.0, 288.0, 448.0]
    assert fake_fp8(x[:2] * 2, 2.0).tolist() == [2.0, 2.25], "the scale divides before and multiplies after"


def test_calibration_and_evaluation_windows_are_disjoint():
    import numpy as np

    from moesearch.ranks.train import Batches

    n, block = (
        1_000_000,
        1000,
    )  # the training text all ones, the held-out text all twos: a window shows where it came from
    stream = np.where(np.arange(n) // block % 20 == 19, 2, 1).astype(np.uint8)
    text = corpus.Corpus(corpus.Part(stream, block, False), corpus.Part(stream, block, True), sha256="x")
    cfg = RunConfig.build(TINY, ["gelu", "gelu"], seed=0, data=None, world_size=1)
    batches = Batches(text, cfg, 0, 1, torch.device("cpu"))
    calibration = torch.cat([x for x, _ in batches.calibration_batches()])
    evaluation = torch.cat([torch.cat([x, y]) for x, y in batches.eval_batches()])
    assert (calibration == 1).all() and (evaluation == 2).all()
    assert len(calibration) == cfg.train.eval_sequences // 4, "a quarter as many windows as the evaluation"


@pytest.mark.slow
def test_calibration_per_expert_on_a_known_input(one_rank):
    """Hand-fed calibration of one MoE layer with four experts: ranges per expert and tensor, padding rows
    (all zero) are not tokens, an expert that saw none is counted and left unquantized."""
    from moesearch.ranks.model import Transformer
    from moesearch.ranks.probes import ffn_slots
    from moesearch.ranks.quantize import Calibration, FakeQuant

    spec = TINY.model.model_copy(update={"n_layers": 1, "num_experts": 4, "moe_every": 1})
    model = Transformer(spec, ["relu"], ep_size=1).eval()
    experts = [ffn for ffn, _, _ in ffn_slots(model, 0)]
    pad = torch.zeros(1, 3)
    fed = {
        0: [torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([[0.5, 0.0, 3.0]])],  # input, then hidden
        2: [torch.tensor([[4.0, 1.0, 1.0]]), torch.tensor([[0.0, 0.0, 0.25]])],
        3: [pad, pad],
    }  # capacity padding only: routed no token
    calibration = Calibration(model, 0, 4)
    for expert, (x, h) in fed.items():
        calibration._record(0, expert, 0)(experts[expert], (torch.cat([x, pad]),))
        calibration._record(0, expert, 1)(experts[expert].w_out, (torch.cat([h, pad]),))
    calibration._record(0, 2, 0)(experts[2], (torch.tensor([[-6.0, 0.0, 0.0]]),))  # a second batch widens the range
    calibration.reduce(torch.device("cpu"))
    assert calibration.uncalibrated == 2, "experts 1 (never called) and 3 (padding only)"
    assert calibration.ranges == {
        experts[0]: (-2.0, 1.0),
        experts[0].w_out: (0.0, 3.0),
        experts[2]: (-6.0, 4.0),
        experts[2].w_out: (0.0, 0.25),
    }
    with FakeQuant(calibration, "int8") as quant:
        hidden = torch.tensor([[0.01, 1.0, 2.999]])
        (out,) = quant._quantize(experts[0].w_out, (hidden,))  # [0, 3]: scale 3/255, zero point -128
        assert torch.allclose(out, torch.tensor([[3 / 255, 1.0, 3.0]]))
        assert quant._quantize(experts[3].w_out, (hidden,))[0] is hidden, "no range: passed on unchanged"


@pytest.mark.slow
def test_a_quantized_evaluation_is_finite_and_differs_from_full_precision(one_rank, text):
    from moesearch.ranks.train import train_trial

    cfg = RunConfig.build(TINY, ["swiglu", "gelu"], seed=2, data=None, world_size=1)
    result = train_trial(cfg, text)
    m = result.metrics
    assert m["quant_uncalibrated_experts"] == 0, "every expert of the tiny model gets calibration tokens"
    for fmt in ("int8", "int8_sym", "fp8"):
        assert math.isfinite(m[f"val_loss_{fmt}"]) and m[f"val_loss_{fmt}"] != m["val_loss"]
        assert m[f"quant_gap_{fmt}"] == pytest.approx(m[f"val_loss_{fmt}"] - m["val_loss"])
    for row in result.layers:
        assert row["hidden_abs_max"] > 0 and row["hidden_max_over_rms"] >= 1 and 0 <= row["hidden_beyond_6sd_frac"] < 1
        assert (
            len(row["expert_abs_max"]) == TINY.model.num_experts and max(row["expert_abs_max"]) == row["hidden_abs_max"]
        )


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["swiglu", "xielu", "polynorm", "gelu+swiglu"])
def test_the_compiled_path_trains_a_tiny_model(one_rank, text, activation):
    """train.compile: DeepSpeed's engine.compile() (inductor's C++ kernels here); one MoE layer keeps the
    compilation short. Two ranks compile too (measured: docs/performance.md, bench/compile.py). Every
    compiled function compiles at most twice, once for training and once for evaluation (a third raises:
    `TORCH_LOGS=recompiles` showed the final evaluation's new batch shape recompiling it), and the probes' and
    fake quantization's hooks run (compiled, Dynamo skipped them: an 8-bit gap of exactly 0). The learnable
    activations and a mixed layer compile too, and train as they do eager (their learned parameters alike)."""
    import torch._dynamo.config

    from moesearch.ranks.train import train_trial

    def trained(compiled: bool):
        small = TINY.model_copy(
            update={
                "model": TINY.model.model_copy(update={"n_layers": 1, "d_model": 16, "n_heads": 2, "d_ff": 48}),
                "train": TINY.train.model_copy(
                    update={"compile": compiled, "steps": 4, "warmup_steps": 1, "eval_interval": 2, "eval_sequences": 4}
                ),
            }
        )
        return train_trial(RunConfig.build(small, [activation], seed=0, data=None, world_size=1), text)

    torch._dynamo.reset()  # each case's model compiles the same forward code: count its compilations alone
    with torch._dynamo.config.patch(recompile_limit=2, fail_on_recompile_limit_hit=True):
        result = trained(True)
    eager = trained(False)
    assert math.isfinite(result.metrics["val_loss"]) and len(result.steps) == 4
    assert all(result.metrics[f"quant_gap_{f}"] != 0 for f in ("int8", "int8_sym", "fp8")), "the hooks ran"
    assert result.layers[0]["hidden_std"] > 0 and result.layers[0]["hidden_abs_max"] > 0
    # the same model: inductor's kernels round differently, and a token routed the other way moves the loss
    # (seen: 1.3e-4 relative, PolyNorm after XIELU in one process)
    assert result.metrics["val_loss"] == pytest.approx(eager.metrics["val_loss"], rel=1e-3), "the same model"
    if eager.layers[0]["learned"]:
        from moesearch.core.activations import REGISTRY
        from moesearch.ranks.model import NONLINEARITIES

        init = NONLINEARITIES[REGISTRY[activation].nonlinearity]().learned()
        found, expected = json.loads(result.layers[0]["learned"]), json.loads(eager.layers[0]["learned"])
        # moved from their init, compiled as eager; not equal to eager's: one token routed the other way moves
        # an expert's few-step update by half (seen: 1.6e-4 of a 3e-4 step)
        assert found.keys() == expected.keys() == init.keys()
        assert any(abs(v - init[k]) > 1e-5 for k in found for v in found[k]), "compiled, they train"


@pytest.mark.parametrize(
    "routing",
    [
        {"top_k": 2},  # DeepSpeed samples top-2's second expert with Gumbel noise, in evaluation too
        {"top_k": 1, "eval_capacity_factor": 0.5},  # top-1 keeps random tokens of an overflowing expert
    ],
)
@pytest.mark.slow
def test_evaluation_routes_exactly(one_rank, routing):
    from moesearch.ranks.model import Transformer, exact_routing, init_weights, moe_layers

    spec = TINY.model.model_copy(update={"num_experts": 4, "min_capacity": 0, **routing})
    model = Transformer(spec, ["gelu", "swiglu"], ep_size=1).eval()
    init_weights(model, spec, seed=0, first_expert=0, streams="crn")
    idx_BT = torch.randint(256, (4, spec.seq_len), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        noisy = [model(idx_BT)[0] for _ in range(3)]
        with exact_routing(model):
            exact = [model(idx_BT) for _ in range(3)]
    assert not all(torch.equal(noisy[0], n) for n in noisy[1:]), "DeepSpeed's gate is noisy unless told otherwise"
    for logits, _, counts in exact[1:]:
        assert torch.equal(logits, exact[0][0]), "the same weights and tokens: the same logits, to the last bit"
        assert all(torch.equal(c, c0) for c, c0 in zip(counts, exact[0][2], strict=True)), "and the same routing"
    gates = [moe.deepspeed_moe.gate for _, moe in moe_layers(model)]
    assert all(g.top2_2nd_expert_sampling and g.use_rts for g in gates), "training's exploration comes back after"


@pytest.mark.slow
def test_every_evaluation_of_an_engine_is_exact(one_rank, text):
    """Full precision twice, and a quantized pass with nothing calibrated (8-bit off): equal to the last bit."""

    from moesearch.ranks.quantize import Calibration, FakeQuant
    from moesearch.ranks.train import Batches, _evaluate, build_engine

    spec = TINY.model_copy(update={"model": TINY.model.model_copy(update={"top_k": 2, "num_experts": 4})})
    cfg = RunConfig.build(spec, ["swiglu", "gelu"], seed=3, data=None, world_size=1)
    engine = build_engine(cfg, 0)
    try:
        batches = Batches(text, cfg, 0, 1, engine.device)
        first, second = _evaluate(engine, batches), _evaluate(engine, batches)
        with FakeQuant(Calibration(engine.module, 0, 4), "int8"):  # no calibration: every tensor passes unquantized
            unquantized = _evaluate(engine, batches)
        assert first == second == unquantized
        assert engine.module.training, "training mode again after evaluating"
    finally:
        engine.destroy()
