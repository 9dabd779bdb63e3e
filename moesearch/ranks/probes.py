"""Statistics of each layer's FFN hidden activations: the input of the FFN's output projection.

Forward hooks, so the model knows nothing of them. Every FFN counts, a dense one or each local
expert of an MoE layer; the empty slots of an expert's capacity buffer (all-zero rows that DeepSpeed
pads with) are left out, so only real tokens count: each token once per expert it was routed to
(top-k: k times), on the rank whose expert processed it. Sums are all-reduced, so the statistics do
not depend on the expert-parallel layout.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from moesearch.ranks.model import FFN, Transformer

NEAR_ZERO = 1e-2  # |h| below this counts as near zero (absolute: the same cut for every trial)
_SUMS = 5  # per layer: values, sum, sum of squares, exact zeros, near zeros


class HiddenStats:
    """Use as `with HiddenStats(model) as probe: <forward passes>`, then `probe.reduce(device)`."""

    def __init__(self, model: Transformer):
        self.model = model
        self.sums_LS = torch.zeros(len(model.blocks), _SUMS, dtype=torch.float64)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._real_rows: torch.Tensor | None = None

    def __enter__(self) -> HiddenStats:
        for layer, block in enumerate(self.model.blocks):
            for ffn in (m for m in block.modules() if isinstance(m, FFN)):
                self._handles.append(ffn.register_forward_pre_hook(self._note_rows))
                self._handles.append(ffn.w_out.register_forward_pre_hook(self._hook(layer)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _note_rows(self, module: nn.Module, args: tuple[torch.Tensor]) -> None:
        self._real_rows = args[0].abs().amax(dim=-1) > 0

    def _hook(self, layer: int):
        def record(module: nn.Module, args: tuple[torch.Tensor]) -> None:
            h_NF = args[0][self._real_rows].float()
            self.sums_LS[layer] += torch.stack([  # on h's device (a GPU): one copy to the CPU per call
                torch.tensor(h_NF.numel(), dtype=torch.float64, device=h_NF.device), h_NF.sum().double(),
                h_NF.square().sum().double(), (h_NF == 0).sum().double(), (h_NF.abs() < NEAR_ZERO).sum().double(),
            ]).cpu()

        return record

    def reduce(self, device: torch.device) -> list[dict[str, float]]:
        """Per layer: mean, std, fraction of exact zeros and of near zeros, over every rank's tokens."""
        sums_LS = self.sums_LS.to(device)
        dist.all_reduce(sums_LS)
        n, total, squares, zeros, near = sums_LS.cpu().T
        n = n.clamp(min=1)
        mean = total / n
        return [{"hidden_mean": m, "hidden_std": s, "hidden_zero_frac": z, "hidden_near_zero_frac": nz}
                for m, s, z, nz in zip(mean.tolist(), (squares / n - mean.square()).clamp(min=0).sqrt().tolist(),
                                       (zeros / n).tolist(), (near / n).tolist(), strict=True)]
