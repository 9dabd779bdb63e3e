"""What each MoE layer's router chose: the tokens each global expert got over training and on the held-out
windows at each evaluation, and the share each activation's experts got, so a mixed layer (`gelu+swiglu`)
shows which activation its router prefers and when it came to prefer it.

DeepSpeed's gate returns, per MoE layer, the tokens of this rank it routed to every global expert (before the
capacity drop: the router's choice, not what fitted); summed over ranks they are the layer's loads.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch

from moesearch.core.activations import of_experts
from moesearch.core.config import RunConfig


class Loads:
    """Tokens routed to each global expert of each MoE layer (rows: the MoE layers in order), this rank's until
    `shares` sums them over the ranks."""

    def __init__(self) -> None:
        self.count_LE: torch.Tensor | None = None  # sized by the first pass: a dense model has no counts

    def add(self, counts: list[torch.Tensor]) -> None:
        """One forward pass's counts (the model returns one tensor per MoE layer)."""
        if counts:
            count_LE = torch.stack([c.float().cpu() for c in counts])
            self.count_LE = count_LE if self.count_LE is None else self.count_LE + count_LE

    def shares(self, summed: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Each layer's share of its routed tokens per expert, `summed` over every rank (all must call this)."""
        if self.count_LE is None:  # a dense model, the same on every rank
            return torch.zeros(0, 0)
        count_LE = summed(self.count_LE)
        return count_LE / count_LE.sum(dim=1, keepdim=True).clamp(min=1)


def by_activation(choice: str, share_E: torch.Tensor) -> dict[str, float]:
    """A layer's expert shares summed per activation: {"gelu": 0.48, "swiglu": 0.52} for a mix, {name: 1.0}
    for one activation."""
    shares: dict[str, float] = {}
    for activation, share in zip(of_experts(choice, len(share_E)), share_E.tolist(), strict=True):
        shares[activation] = shares.get(activation, 0.0) + share
    return shares


COLUMNS = ("n_experts", "top_k", "expert_load", "load_balance", "activation_share", "eval_activation_share")


def columns(cfg: RunConfig, train_LE: torch.Tensor, evals: dict[int, torch.Tensor]) -> list[dict]:
    """Per layer, the layers table's routing columns: over all training tokens (`expert_load`, `load_balance`,
    `activation_share`) and on the held-out tokens at each evaluation (`eval_activation_share`, JSON
    {step: {activation: share}}); nulls for a dense layer."""
    m, rows, moe = cfg.model, [], 0
    for layer, choice in enumerate(cfg.layers):
        if not m.is_moe(layer):
            rows.append(dict.fromkeys(COLUMNS))
            continue
        share_E = train_LE[moe]
        rows.append(
            {
                "n_experts": m.num_experts,
                "top_k": m.top_k,
                "expert_load": share_E.tolist(),
                "load_balance": share_E.max().item() * m.num_experts,
                "activation_share": json.dumps(by_activation(choice, share_E)),
                "eval_activation_share": json.dumps(
                    {str(step): by_activation(choice, share_LE[moe]) for step, share_LE in sorted(evals.items())}
                ),
            }
        )
        moe += 1
    return rows


def events(cfg: RunConfig, step: int, share_LE: torch.Tensor) -> list[tuple[str, float, int]]:
    """Each mixed layer's shares on the held-out tokens as monitor scalars, `Eval/routing/layer_1/gelu`."""
    moe_layers = [layer for layer in range(len(cfg.layers)) if cfg.model.is_moe(layer)]
    return [
        (f"Eval/routing/layer_{layer}/{activation}", share, step)
        for layer, share_E in zip(moe_layers, share_LE, strict=True)
        if len(set(of_experts(cfg.layers[layer], len(share_E)))) > 1
        for activation, share in by_activation(cfg.layers[layer], share_E).items()
    ]
