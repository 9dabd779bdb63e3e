"""How each parameter is drawn and how fast it learns: GPT-2's standard parametrization, or muP.

muP (Tensor Programs V, Table 3, Adam) relative to a base shape. Each matrix has a width multiplier per
dimension (`ModelSpec.width_mults`: d_model's for the residual stream's side, d_ff's for the FFN hidden side),
m its fan-in's, and is one of Table 3's three kinds by which of its dimensions grow:
- hidden (fan-in and fan-out grow: attention qkv and out, every expert's and dense FFN's in/gate and out when
  d_model and d_ff both grow): init std / sqrt(m), Adam learning rate / m, weight decay x m (AdamW decays by
  lr x wd: that product stays as at the base);
- output-like (fan-in grows, fan-out does not: the router, d_model -> a fixed number of experts, as "muP for
  Mixture of Experts" (arXiv 2508.09752) derives; an FFN's out projection where only d_ff grows): init std / m
  and learning rate / m. DeepSpeed's gate computes its logits itself and takes no multiplier; Adam's symmetry
  makes a 1/m multiplier the same as init / m and learning rate / m;
- input-like (fan-in fixed: token and position embeddings, an FFN's in projection where only d_ff grows) and
  vectors (norm weights): as at the base;
- the readout (tied to the token embedding): logits x 1/m, in the model (`Transformer.readout_mult`);
- attention scores 1/d_head (`ModelSpec.attention_scale`);
- Adam's epsilon / m, every group (every gradient shrinks as 1/m under the 1/m readout; Everett et al. 2024).
CompleteP (Dey et al. 2025, "Don't be lazy: CompleteP enables compute-efficient deep transformers", alpha = 1,
its Table 1 for AdamW) adds depth to muP, with depth multiplier m_L = n_layers / base_n_layers
(`ModelSpec.depth_mult`):
- every residual branch (attention, FFN or MoE) is multiplied by 1 / m_L (`Block.branch_mult`), so each
  layer's update to the residual stream shrinks as the layers multiply and the deep model's features move as
  much as the shallow one's;
- the matrices writing into the residual stream keep the base depth's init (GPT-2 shrinks them with depth:
  that job is the multiplier's now); learning rates and weight decay stay muP's (alpha = 1 cancels their
  depth factor);
- Adam's epsilon / m_L on top of muP's / m inside the blocks (the branch multiplier shrinks the gradients of
  what it multiplies); the embeddings, readout and final norm keep muP's.
At the base shape every multiplier is 1, so the three parametrizations build the same model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from moesearch.core.sections import ModelSpec

STD = 0.02  # GPT-2's initialisation scale
ADAM_EPS = 1e-8  # torch's AdamW default, at the base shape
ROUTER = "deepspeed_moe.gate.wg.weight"  # DeepSpeed's TopKGate matrix: d_model -> experts
_VECTOR_LIKE = ("embed.weight", "pos.weight")  # the only matrices with one dimension that does not grow


def out_std(n_layers: int) -> float:
    """GPT-2's std for matrices writing into the residual stream: shrinks with depth."""
    return STD / math.sqrt(2 * n_layers)


def _mults(name: str, spec: ModelSpec) -> tuple[float, float]:
    """The width multipliers of a matrix's fan-in and fan-out (1 under the standard parametrization)."""
    d_mult, ff_mult = spec.width_mults()
    if name.endswith(_VECTOR_LIKE):
        return 1.0, d_mult  # a fixed vocabulary or position count in
    if name.endswith("w_in.weight"):
        return d_mult, ff_mult
    if name.endswith("w_out.weight"):
        return ff_mult, d_mult
    if name.endswith(ROUTER):
        return d_mult, 1.0  # a fixed number of experts out
    return d_mult, d_mult  # attention


def init_std(name: str, spec: ModelSpec) -> float:
    """The std a matrix is drawn with."""
    base = out_std(spec.base_n_layers or spec.n_layers) if name.endswith(("out.weight", "w_out.weight")) else STD
    m_in, m_out = _mults(name, spec)
    return base / m_in if m_out == 1.0 else base / math.sqrt(m_in)  # output-like / hidden (input-like: m_in 1)


LEARNED = ".nonlinearity."  # in the name of a learnable activation's own parameters (`ranks/learnable.py`)


def lr_mult(name: str, p: nn.Parameter, spec: ModelSpec, learned_mult: float = 1.0) -> float:
    """The learning rate of a parameter relative to the space's `train.lr` (a learnable activation's own:
    `train.learned_lr_mult`)."""
    if LEARNED in name:
        return learned_mult
    return 1.0 if p.dim() < 2 else 1.0 / _mults(name, spec)[0]


def param_groups(
    model: nn.Module, spec: ModelSpec, lr: float, weight_decay: float, learned_mult: float = 1.0
) -> list[dict]:
    """Optimizer groups: decay matrices, not norms; one group per learning rate, its weight decay x the inverse
    (lr x wd as at the base) and Adam's epsilon / m, and / m_L more inside the blocks (`_eps`). The group at `lr`
    comes first (the steps table logs group 0's rate). DeepSpeed splits each group further into expert /
    non-expert; its scheduler scales every group's own rate (WarmupCosineLR keeps each group's initial rate),
    so the ratios hold through the schedule."""
    groups: dict[tuple[bool, float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        groups.setdefault((p.dim() >= 2, lr_mult(name, p, spec, learned_mult), _eps(name, spec)), []).append(p)
    return [
        {
            "params": params,
            "lr": lr * mult,
            "weight_decay": weight_decay / mult if decay else 0.0,
            "eps": eps,
            "name": f"{'decay' if decay else 'no_decay'}_lr{mult:g}_eps{eps:.3g}",
        }
        for (decay, mult, eps), params in sorted(
            groups.items(), key=lambda kv: (kv[0][1] != 1.0, not kv[0][0], -kv[0][2])
        )
    ]


def _eps(name: str, spec: ModelSpec) -> float:
    """Adam's epsilon of a parameter: / m everywhere (muP), and / m_L inside the residual blocks (CompleteP's
    Eq. 40: the branch multiplier shrinks only the gradients of what it multiplies; embeddings, the readout and
    the final norm keep muP's)."""
    inside = name.startswith("blocks.") or ".blocks." in name
    return ADAM_EPS / (spec.width_mults()[0] * (spec.depth_mult() if inside else 1.0))


def draw(p: torch.Tensor, name: str, spec: ModelSpec, generator: torch.Generator | None) -> None:
    """Draw one matrix at its std."""
    nn.init.normal_(p, std=init_std(name, spec), generator=generator)
