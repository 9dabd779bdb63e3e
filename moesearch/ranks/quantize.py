"""Fake quantization of the FFN activations, for evaluating a trained model as it would run in 8 bits.

Two tensors of every FFN (each expert of an MoE layer its own) are quantized: its input and its
hidden activation, the input of the output projection. Per-tensor symmetric scales are calibrated
on held-out training windows (never the evaluation windows): INT8 through torch's own
`fake_quantize_per_tensor_affine` (scale max|x| / 127, zero point 0), FP8 E4M3 by a round trip
through `torch.float8_e4m3fn` (scale max|x| / 448, its largest finite value). Weights stay as
trained: this measures what the activations lose. Forward hooks: the model knows nothing of them.
"""

from __future__ import annotations

import torch
from torch import nn

from moesearch.ranks.model import Transformer
from moesearch.ranks.probes import ffn_slots

FORMATS = ("int8", "fp8")
INT8_MAX = 127
FP8_MAX = torch.finfo(torch.float8_e4m3fn).max  # 448


def fake_int8(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x rounded to the INT8 grid of `scale` and back (symmetric, zero point 0, values clamped to [-128, 127])."""
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, 0, -INT8_MAX - 1, INT8_MAX).to(x.dtype)


def fake_fp8(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x scaled into E4M3's range, cast to float8 and back: FP8's rounding and saturation, on any device."""
    return ((x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).float() * scale).to(x.dtype)


_FAKE = {"int8": (fake_int8, INT8_MAX), "fp8": (fake_fp8, FP8_MAX)}


class Calibration:
    """`with Calibration(model, first_expert, num_experts) as c: <forward passes>`, then `c.reduce(device)`:
    max |x| per FFN and tensor, the same on every rank (a dense FFN's over every rank's windows, an
    expert's over the ranks that hold a copy of it)."""

    def __init__(self, model: Transformer, first_expert: int = 0, num_experts: int = 1):
        self.sites = [(site, layer, slot, i) for ffn, layer, slot in ffn_slots(model, first_expert)
                      for i, site in enumerate((ffn, ffn.w_out))]
        self.amax_LE2 = torch.zeros(len(model.blocks), num_experts, 2, dtype=torch.float64)
        self.amax: dict[nn.Module, float] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> Calibration:
        for site, layer, slot, i in self.sites:
            self._handles.append(site.register_forward_pre_hook(self._record(layer, slot, i)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _record(self, layer: int, slot: int, i: int):
        def record(module: nn.Module, args: tuple[torch.Tensor]) -> None:
            if args[0].numel():
                seen = args[0].detach().abs().max().double().cpu()
                self.amax_LE2[layer, slot, i] = torch.maximum(self.amax_LE2[layer, slot, i], seen)

        return record

    def reduce(self, device: torch.device) -> None:
        import torch.distributed as dist

        amax = self.amax_LE2.to(device)
        dist.all_reduce(amax, op=dist.ReduceOp.MAX)
        amax = amax.cpu()
        self.amax = {site: amax[layer, slot, i].item() for site, layer, slot, i in self.sites}


class FakeQuant:
    """`with FakeQuant(calibration, "int8"): <forward passes>`: every calibrated tensor quantized."""

    def __init__(self, calibration: Calibration, fmt: str):
        self.calibration, (self.fake, self.top) = calibration, _FAKE[fmt]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FakeQuant:
        for site, *_ in self.calibration.sites:
            self._handles.append(site.register_forward_pre_hook(self._quantize))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _quantize(self, module: nn.Module, args: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        amax = self.calibration.amax.get(module, 0.0)
        # an expert that saw no calibration token has no scale: it passes its input on unchanged
        return (self.fake(args[0], amax / self.top),) if amax > 0 else args
