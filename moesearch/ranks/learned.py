"""What each layer's learnable activation learned, gathered from every rank for rank 0's layer records.

Its parameters per expert, its curve and the fixed activation nearest it (`ranks/learnable.py` holds the
activations themselves and the curve and nearest-shape rules).
"""

from __future__ import annotations

import json

import torch
import torch.distributed as dist
from torch import nn

from moesearch.core.activations import REGISTRY
from moesearch.core.config import RunConfig
from moesearch.ranks import learnable
from moesearch.ranks.model import NONLINEARITIES
from moesearch.ranks.probes import ffn_slots


def rows(model: nn.Module, cfg: RunConfig, first_expert: int, device: torch.device) -> list[dict]:
    """Per layer, what its learnable nonlinearity learned: `learned`, JSON {parameter: [value per expert]} (one
    value for a dense layer), its curve (the mean over experts, at CURVE_X) and `nearest_fixed`, the fixed
    activation nearest it; nulls for a fixed activation. Every rank calls this: the experts are gathered from
    all of them."""
    world, n_slots = dist.get_world_size(), max(cfg.model.num_experts, 1)
    names: dict[int, list[str]] = {}
    values_LSP = torch.zeros(len(cfg.layers), n_slots, 8)
    for ffn, layer, slot in ffn_slots(model, first_expert):
        if hasattr(ffn.nonlinearity, "learned"):
            found = ffn.nonlinearity.learned()
            names[layer] = list(found)
            values_LSP[layer, slot, : len(found)] = torch.tensor(list(found.values()))
    none = {"learned": None, "nearest_fixed": None, "learned_curve": None}
    if not names:
        return [none for _ in cfg.layers]
    values_LSP = values_LSP.to(device)  # through the engine's device: NCCL needs GPU tensors
    dist.all_reduce(values_LSP)
    values_LSP = values_LSP.cpu()
    fixed = {a: NONLINEARITIES[s.nonlinearity] for a, s in REGISTRY.items() if not s.gated and not s.learned}
    grid_G = torch.linspace(-3, 3, 601)  # CURVE_X, ten times finer
    rows = []
    for layer, activation in enumerate(cfg.layers):
        if layer not in names:
            rows.append(none)
            continue
        moe = cfg.model.is_moe(layer)
        copies = world // cfg.ep_size if moe else world  # ranks holding each of the layer's FFNs
        per_slot = (values_LSP[layer, : (n_slots if moe else 1), : len(names[layer])] / copies).tolist()
        learned = {k: [v[i] for v in per_slot] for i, k in enumerate(names[layer])}
        curve = NONLINEARITIES[REGISTRY[activation].nonlinearity].curve
        mean_G = torch.stack([curve(dict(zip(names[layer], v, strict=True)), grid_G) for v in per_slot]).mean(0)
        rows.append(
            {
                "learned": json.dumps(learned),
                "nearest_fixed": learnable.nearest(mean_G, grid_G, fixed)[0],
                "learned_curve": mean_G[::10].tolist(),
            }
        )
    return rows
