"""Statistics of each layer's FFN hidden activations: the input of the FFN's output projection.

Forward hooks, so the model knows nothing of them. Every FFN counts, a dense one or each local
expert of an MoE layer; the empty slots of an expert's capacity buffer (all-zero rows that DeepSpeed
pads with) are left out, so only real tokens count: each token once per expert it was routed to
(top-k: k times), on the rank whose expert processed it. Sums are kept per layer and global expert
(a dense layer has one slot) and all-reduced, so the statistics do not depend on the expert-parallel
layout. Two kinds: the moments and extremes (`HiddenStats`), and, given those, the share of values
beyond 6 standard deviations (`TailShare`), which needs the mean and deviation first.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
from deepspeed.moe.layer import MoE
from torch import nn

from moesearch.ranks.model import FFN, Transformer

NEAR_ZERO = 1e-2  # |h| below this counts as near zero (absolute: the same cut for every trial)
TAIL_SIGMAS = 6.0  # a value beyond this many standard deviations from the mean is an outlier
_SUMS = 7  # per layer and expert: values, sum, sums of squares, cubes and fourth powers, exact zeros, near zeros


def ffn_slots(model: Transformer, first_expert: int) -> list[tuple[FFN, int, int]]:
    """(FFN module, layer, slot) of every FFN: slot 0 for a dense layer, the global expert index in an MoE
    layer (local expert j of this rank is global expert first_expert + j)."""
    found = []
    for layer, block in enumerate(model.blocks):
        if isinstance(block.ffn, MoE):
            found += [
                (e, layer, first_expert + j) for j, e in enumerate(block.ffn.deepspeed_moe.experts.deepspeed_experts)
            ]
        else:
            found.append((block.ffn, layer, 0))
    return found


class _HiddenProbe:
    """Calls `self._add(layer, slot, h_NF)` with the real rows of every FFN's hidden activation."""

    def __init__(self, model: Transformer, first_expert: int = 0, num_experts: int = 1):
        self.model, self.first_expert, self.num_experts = model, first_expert, num_experts
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._real_rows: torch.Tensor | None = None

    def __enter__(self):
        for ffn, layer, slot in ffn_slots(self.model, self.first_expert):
            self._handles.append(ffn.register_forward_pre_hook(self._note_rows))
            self._handles.append(ffn.w_out.register_forward_pre_hook(self._hook(layer, slot)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _note_rows(self, module: nn.Module, args: tuple[torch.Tensor]) -> None:
        self._real_rows = args[0].abs().amax(dim=-1) > 0

    def _hook(self, layer: int, slot: int):
        def record(module: nn.Module, args: tuple[torch.Tensor]) -> None:
            self._add(layer, slot, args[0][self._real_rows].double())

        return record

    def _add(self, layer: int, slot: int, h_NF: torch.Tensor) -> None:
        raise NotImplementedError


class HiddenStats(_HiddenProbe):
    """Use as `with HiddenStats(model, first_expert, num_experts) as probe: <forward passes>`, then
    `probe.reduce(device)`."""

    def __init__(self, model: Transformer, first_expert: int = 0, num_experts: int = 1):
        super().__init__(model, first_expert, num_experts)
        self.sums_LES = torch.zeros(len(model.blocks), num_experts, _SUMS, dtype=torch.float64)
        self.max_LE = torch.zeros(len(model.blocks), num_experts, dtype=torch.float64)

    def _add(self, layer: int, slot: int, h_NF: torch.Tensor) -> None:
        powers = [h_NF.pow(p).sum() for p in (1, 2, 3, 4)]
        self.sums_LES[layer, slot] += torch.stack(
            [  # on h's device (a GPU): one copy to the CPU per call
                torch.tensor(h_NF.numel(), dtype=torch.float64, device=h_NF.device),
                *powers,
                (h_NF == 0).sum().double(),
                (h_NF.abs() < NEAR_ZERO).sum().double(),
            ]
        ).cpu()
        if h_NF.numel():
            self.max_LE[layer, slot] = torch.maximum(self.max_LE[layer, slot], h_NF.abs().max().cpu())

    def reduce(self, device: torch.device) -> list[dict]:
        """Per layer: mean, std, zero and near-zero fractions, max |h|, max |h| / RMS and excess kurtosis,
        over every rank's tokens; an MoE layer also has them per expert (lists `expert_*`)."""
        sums_LES, max_LE = self.sums_LES.to(device), self.max_LE.to(device)
        dist.all_reduce(sums_LES)
        dist.all_reduce(max_LE, op=dist.ReduceOp.MAX)
        self.reduced = sums_LES.cpu(), max_LE.cpu()  # TailShare needs the mean and deviation
        sums_LES, max_LE = self.reduced
        rows = []
        for layer, ffn in enumerate(self.model.blocks):
            whole = _moments(sums_LES[layer].sum(dim=0), max_LE[layer].max().item())
            row = {
                "hidden_mean": whole["mean"],
                "hidden_std": whole["std"],
                "hidden_zero_frac": whole["zero_frac"],
                "hidden_near_zero_frac": whole["near_zero_frac"],
                "hidden_abs_max": whole["abs_max"],
                "hidden_max_over_rms": whole["max_over_rms"],
                "hidden_excess_kurtosis": whole["excess_kurtosis"],
            }
            if isinstance(ffn.ffn, MoE):
                experts = [_moments(sums_LES[layer, e], max_LE[layer, e].item()) for e in range(self.num_experts)]
                row.update(
                    {f"expert_{k}": [m[k] for m in experts] for k in ("abs_max", "max_over_rms", "excess_kurtosis")}
                )
            rows.append(row)
        return rows

    def mean_std(self) -> torch.Tensor:
        """(layers, experts, 2): the mean and standard deviation per slot and per layer (last slot: the layer's)."""
        sums_LES, _ = self.reduced
        per_slot = [[_moments(sums_LES[i, e], 0.0) for e in range(self.num_experts)] for i in range(len(sums_LES))]
        layer = [_moments(sums_LES[i].sum(dim=0), 0.0) for i in range(len(sums_LES))]
        return torch.tensor(
            [
                [[m["mean"], m["std"]] for m in slots] + [[w["mean"], w["std"]]]
                for slots, w in zip(per_slot, layer, strict=True)
            ],
            dtype=torch.float64,
        )


def _moments(sums_S: torch.Tensor, abs_max: float) -> dict[str, float]:
    n, s1, s2, s3, s4, zeros, near = sums_S.tolist()
    if n == 0:
        return dict.fromkeys(
            ("mean", "std", "zero_frac", "near_zero_frac", "abs_max", "max_over_rms", "excess_kurtosis"), math.nan
        )
    mean, e2, e3, e4 = s1 / n, s2 / n, s3 / n, s4 / n
    var = max(e2 - mean**2, 0.0)
    central4 = e4 - 4 * mean * e3 + 6 * mean**2 * e2 - 3 * mean**4
    return {
        "mean": mean,
        "std": math.sqrt(var),
        "zero_frac": zeros / n,
        "near_zero_frac": near / n,
        "abs_max": abs_max,
        "max_over_rms": abs_max / math.sqrt(e2) if e2 > 0 else math.nan,
        "excess_kurtosis": central4 / var**2 - 3 if var > 0 else math.nan,
    }


class TailShare(_HiddenProbe):
    """The share of hidden values beyond TAIL_SIGMAS standard deviations of their slot's mean (and of
    their layer's), given `HiddenStats.mean_std()` from the same batches."""

    def __init__(self, model: Transformer, mean_std_LE2: torch.Tensor, first_expert: int = 0, num_experts: int = 1):
        super().__init__(model, first_expert, num_experts)
        self.mean_std_LE2 = mean_std_LE2
        self.counts_LE2 = torch.zeros(len(model.blocks), num_experts + 1, 2, dtype=torch.float64)  # beyond, values

    def _add(self, layer: int, slot: int, h_NF: torch.Tensor) -> None:
        for column in (slot, self.num_experts):  # the expert's own, and the layer's
            mean, std = self.mean_std_LE2[layer, column].tolist()
            beyond = ((h_NF - mean).abs() > TAIL_SIGMAS * std).sum() if std > 0 else h_NF.new_zeros(())
            self.counts_LE2[layer, column] += torch.stack([beyond.double(), h_NF.new_tensor(float(h_NF.numel()))]).cpu()

    def reduce(self, device: torch.device) -> list[dict]:
        counts = self.counts_LE2.to(device)
        dist.all_reduce(counts)
        share = (counts[..., 0] / counts[..., 1].clamp(min=1)).cpu()
        rows = []
        for layer, block in enumerate(self.model.blocks):
            row = {"hidden_beyond_6sd_frac": share[layer, -1].item()}
            if isinstance(block.ffn, MoE):
                row["expert_beyond_6sd_frac"] = share[layer, :-1].tolist()
            rows.append(row)
        return rows
