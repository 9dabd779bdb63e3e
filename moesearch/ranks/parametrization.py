"""How each parameter is drawn and how fast it learns: GPT-2's standard parametrization, or muP.

muP (Tensor Programs V, Table 3, Adam) relative to a base shape, with width multiplier m = fan_in / base
fan_in of each matrix (`ModelSpec.width_mults`: d_model's for matrices reading the residual stream, d_ff's
for the FFN output projections):
- hidden matrices (attention qkv and out, every expert's and dense FFN's in/gate and out): init std / sqrt(m),
  Adam learning rate / m, weight decay x m (AdamW decays by lr x wd: that product stays as at the base);
- vector-like parameters (token and position embeddings, norm weights): as at the base;
- the readout (tied to the token embedding): logits x 1/m, in the model (`Transformer.readout_mult`);
- the router (d_model -> a fixed number of experts): a readout too, as "muP for Mixture of Experts"
  (arXiv 2508.09752) derives; DeepSpeed's gate computes its logits itself and takes no multiplier, so it
  gets the equivalent init and rate (Adam's symmetry: a multiplier 1/m is init / m and learning rate / m);
- attention scores 1/d_head (`ModelSpec.attention_scale`);
- Adam's epsilon / m, every group (every gradient shrinks as 1/m under the 1/m readout; Everett et al. 2024).
At the base shape every multiplier is 1, so muP and the standard parametrization build the same model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from moesearch.core.space import ModelSpec

STD = 0.02  # GPT-2's initialisation scale
ADAM_EPS = 1e-8  # torch's AdamW default, at the base shape
ROUTER = "deepspeed_moe.gate.wg.weight"  # DeepSpeed's TopKGate matrix: d_model -> experts
_VECTOR_LIKE = ("embed.weight", "pos.weight")  # the only matrices with one dimension that does not grow


def out_std(n_layers: int) -> float:
    """GPT-2's std for matrices writing into the residual stream: shrinks with depth."""
    return STD / math.sqrt(2 * n_layers)


def _mult(name: str, spec: ModelSpec) -> float:
    """The width multiplier of a matrix's fan-in (1 under the standard parametrization)."""
    d_mult, ff_mult = spec.width_mults()
    return ff_mult if name.endswith("w_out.weight") else d_mult


def init_std(name: str, spec: ModelSpec) -> float:
    """The std a matrix is drawn with."""
    base = out_std(spec.n_layers) if name.endswith(("out.weight", "w_out.weight")) else STD
    if name.endswith(_VECTOR_LIKE):
        return base
    m = _mult(name, spec)
    return base / m if name.endswith(ROUTER) else base / math.sqrt(m)


def lr_mult(name: str, p: nn.Parameter, spec: ModelSpec) -> float:
    """The learning rate of a parameter relative to the space's `train.lr`."""
    if p.dim() < 2 or name.endswith(_VECTOR_LIKE):
        return 1.0
    return 1.0 / _mult(name, spec)


def param_groups(model: nn.Module, spec: ModelSpec, lr: float, weight_decay: float) -> list[dict]:
    """Optimizer groups: decay matrices, not norms; one group per learning rate, its weight decay x the inverse
    (lr x wd as at the base) and Adam's epsilon / m. The group at `lr` comes first (the steps table logs group
    0's rate). DeepSpeed splits each group further into expert / non-expert; its scheduler scales every
    group's own rate (WarmupCosineLR keeps each group's initial rate), so the ratios hold through the schedule."""
    eps = ADAM_EPS / spec.width_mults()[0]
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        groups.setdefault((p.dim() >= 2, lr_mult(name, p, spec)), []).append(p)
    return [
        {
            "params": params,
            "lr": lr * mult,
            "weight_decay": weight_decay / mult if decay else 0.0,
            "eps": eps,
            "name": f"{'decay' if decay else 'no_decay'}_lr{mult:g}",
        }
        for (decay, mult), params in sorted(groups.items(), key=lambda kv: (kv[0][1] != 1.0, not kv[0][0]))
    ]


def draw(p: torch.Tensor, name: str, spec: ModelSpec, generator: torch.Generator | None) -> None:
    """Draw one matrix at its std."""
    nn.init.normal_(p, std=init_std(name, spec), generator=generator)
