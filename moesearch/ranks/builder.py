"""The model of a trial: the space's builder (`model.builder`, "package.module:function") called on a rank,
its result checked against what moesearch's search, probes and costs read of it.

A builder returns a module with `blocks`, block i holding its FFN as `.ffn`, made by
`moesearch.ranks.model.ffn_layer` (an FFN of layer i's activation, or a DeepSpeed MoE layer of such experts
where `spec.is_moe(i)`), and a forward from token ids (B, T) to (logits (B, T, vocab), the summed aux loss,
each MoE layer's expert counts). moesearch draws the weights (`model.init_weights`), builds the optimizer
groups and the DeepSpeed engine, and measures everything else. The shipped blocks come the same way.
"""

from __future__ import annotations

from deepspeed.moe.layer import MoE
from torch import nn

from moesearch.core.activations import choice_params, ffn_params, hidden_width, parts
from moesearch.core.builders import BuilderError, load
from moesearch.core.costs import Costs, costs
from moesearch.core.sections import SHIPPED_BUILDER, ModelSpec
from moesearch.ranks.model import FFN, moe_layers


def build(spec: ModelSpec, layers: tuple[str, ...], ep_size: int) -> nn.Module:
    """This rank's model, from the space's builder, checked (`check`)."""
    model = load(spec.builder)(spec, tuple(layers), ep_size)
    check(model, spec, layers)
    return model


def check(model: nn.Module, spec: ModelSpec, layers: tuple[str, ...]) -> None:
    """BuilderError unless block i's `.ffn` is moesearch's FFN of layer i's activation, an MoE layer of such
    experts exactly where the space puts one."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) != len(layers):
        raise BuilderError(
            f"model.builder {spec.builder!r}: its module needs `blocks`, an nn.ModuleList of {len(layers)} blocks "
            f"(one per layer), not {type(blocks).__name__}"
        )
    for i, (block, activation) in enumerate(zip(blocks, layers, strict=True)):
        ffn = getattr(block, "ffn", None)
        experts = list(ffn.deepspeed_moe.experts.deepspeed_experts) if isinstance(ffn, MoE) else [ffn]
        wrong = any(not isinstance(e, FFN) or e.activation not in parts(activation) for e in experts)  # a mix: its own
        if isinstance(ffn, MoE) != spec.is_moe(i) or wrong:
            raise BuilderError(
                f"model.builder {spec.builder!r}: block {i}'s `ffn` is not moesearch.ranks.model.ffn_layer(spec, "
                f"{activation!r}, {spec.is_moe(i)}, ep_size) (found {type(ffn).__name__})"
            )
        for e in experts:  # `counted` takes their sizes from the registry: a resized one would be miscounted
            width = hidden_width(e.activation, spec.d_ff, spec.width_policy, spec.width_multiple)
            expected = ffn_params(e.activation, spec.d_model, width)
            if (found := sum(p.numel() for p in e.parameters())) != expected:
                raise BuilderError(
                    f"model.builder {spec.builder!r}: block {i}'s {e.activation} FFN has {found} parameters, not the "
                    f"{expected} of ffn_layer's (d_model {spec.d_model}, hidden "
                    f"{width}); allowed: the FFN ffn_layer makes, unchanged"
                )


def counted(model: nn.Module, spec: ModelSpec, layers: tuple[str, ...], micro_batch: int) -> Costs:
    """The costs a record carries: the shipped blocks' from their formulas (`core/costs.py`); a model of one's
    own has its dense parameters counted from the module and its experts from the registry (`check` made
    them moesearch's FFNs: a mix's each at its own size), and no FLOPs (None: not known, recorded as null)."""
    if spec.builder == SHIPPED_BUILDER:
        return costs(spec, layers, micro_batch)
    runs = [
        choice_params(layers[i], spec.d_model, spec.d_ff, spec.width_policy, spec.width_multiple)
        for i, _ in moe_layers(model)
    ]
    dense = sum(p.numel() for name, p in model.named_parameters() if "deepspeed_experts" not in name)
    return Costs(
        params_total=dense + sum(sum(run) * spec.num_experts // len(run) for run in runs),
        params_active=dense + sum(spec.top_k * sum(run) // len(run) for run in runs),  # a mix's mean expert
        train_flops_per_token=None,
    )
