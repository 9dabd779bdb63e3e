"""Fake quantization of the FFN activations, for evaluating a trained model as it would run in 8 bits.

Two tensors of every FFN (each expert of an MoE layer its own) are quantized: its input and its
hidden activation, the input of the output projection. Per-tensor ranges (min and max, zero always
inside) are calibrated on held-out training windows (never the evaluation windows), then three formats:
- "int8": affine INT8, the 256 codes spread over [min, max] with a zero point. The objectives
  `val_loss_int8`/`quant_gap_int8` use it: ReLU's hidden activations are one-sided (GELU's nearly so,
  down to -0.17), and a symmetric grid would leave them half its codes while SwiGLU's two-sided one uses
  all: affine is the fair comparison between them.
- "int8_sym": symmetric INT8, zero point 0, scale max|x| / 127, codes [-127, 127] (the symmetric range:
  -128 has no positive twin). What a symmetric-only kernel would do; `*_int8_sym`.
- "fp8": FP8 E4M3 by a round trip through `torch.float8_e4m3fn` (scale max|x| / 448, its largest value).
Smooth-SwiGLU (Fishman et al. 2024, "Scaling FP8 training to trillion-token LLMs") is SwiGLU whose hidden
activation is scaled per channel before it is quantized and unscaled after (the inverse folds into W_out):
each channel c by s_c = 1 / max|h_c| over the calibration windows, so one outlier channel no longer sets
the whole tensor's grid. INT8 goes through torch's own `fake_quantize_per_tensor_affine`. Weights stay as
trained: this measures what the activations lose. Forward hooks: the model knows nothing of them. An expert that saw no
calibration token has no range: both its tensors pass through unquantized, which shrinks the gap, so
`Calibration.uncalibrated` counts such experts and the trial records it (`quant_uncalibrated_experts`).
"""

from __future__ import annotations

import torch
from torch import nn

from moesearch.ranks.model import Transformer
from moesearch.ranks.probes import ffn_slots

FORMATS = ("int8", "int8_sym", "fp8")
INT8_MIN, INT8_MAX = -128, 127
FP8_MAX = torch.finfo(torch.float8_e4m3fn).max  # 448


def int8_affine_params(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) spreading INT8's 256 codes over [lo, hi] (lo <= 0 <= hi, hi > lo): lo is code -128."""
    scale = (hi - lo) / (INT8_MAX - INT8_MIN)
    return scale, min(INT8_MAX, max(INT8_MIN, INT8_MIN - round(lo / scale)))


def int8_sym_params(lo: float, hi: float) -> tuple[float, int]:
    """(scale, 0): the larger of |lo| and |hi| is code 127."""
    return max(-lo, hi) / INT8_MAX, 0


def fake_int8(x: torch.Tensor, scale: float, zero_point: int = 0, symmetric: bool = True) -> torch.Tensor:
    """x rounded to the INT8 grid and back: codes [-127, 127] when symmetric, [-128, 127] when affine."""
    low = -INT8_MAX if symmetric else INT8_MIN
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, low, INT8_MAX).to(x.dtype)


def fake_fp8(x: torch.Tensor, scale: float) -> torch.Tensor:
    """x scaled into E4M3's range, cast to float8 and back: FP8's rounding and saturation, on any device."""
    return ((x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn).float() * scale).to(x.dtype)


def quantizer(fmt: str, lo: float, hi: float):
    """x -> x in `fmt` for a tensor calibrated to [lo, hi]."""
    if fmt == "int8":
        scale, zero_point = int8_affine_params(lo, hi)
        return lambda x: fake_int8(x, scale, zero_point, symmetric=False)
    if fmt == "int8_sym":
        scale, _ = int8_sym_params(lo, hi)
        return lambda x: fake_int8(x, scale)
    if fmt == "fp8":
        scale = max(-lo, hi) / FP8_MAX
        return lambda x: fake_fp8(x, scale)
    raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


class Calibration:
    """`with Calibration(model, first_expert, num_experts) as c: <forward passes>`, then `c.reduce(device)`:
    min and max per FFN and tensor, the same on every rank (a dense FFN's over every rank's windows, an
    expert's over the ranks that hold a copy of it), and how many experts saw no token (`uncalibrated`)."""

    def __init__(self, model: Transformer, first_expert: int = 0, num_experts: int = 1):
        self.sites = [
            (site, layer, slot, i)
            for ffn, layer, slot in ffn_slots(model, first_expert)
            for i, site in enumerate((ffn, ffn.w_out))
        ]
        # per layer, slot and tensor: lo, hi, real tokens seen. lo and hi start at 0, so zero stays on the grid
        # (ReLU's zeros quantize exactly), as torch's observers do
        self.seen_LE23 = torch.zeros(len(model.blocks), num_experts, 2, 3, dtype=torch.float64)
        self.held_LE = torch.zeros(len(model.blocks), num_experts, dtype=torch.float64)  # 1: this rank holds it
        for _, layer, slot, _ in self.sites:
            self.held_LE[layer, slot] = 1
        self.ranges: dict[nn.Module, tuple[float, float]] = {}
        # Smooth-SwiGLU: per channel min and max of its hidden activation (W_out's input), and the scales
        self.channels: dict[nn.Module, tuple[int, int, torch.Tensor]] = {
            ffn.w_out: (layer, slot, torch.zeros(2, ffn.w_out.in_features, dtype=torch.float64))
            for ffn, layer, slot in ffn_slots(model, first_expert)
            if ffn.smooth
        }
        self.scales: dict[nn.Module, torch.Tensor] = {}
        self.uncalibrated = 0
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
            x = args[0].detach().flatten(0, -2)
            if not x.numel():
                return
            # an expert's buffer is padded to capacity with all-zero rows: only the others are tokens
            lo, hi = torch.aminmax(x)
            tokens = (x.abs().amax(dim=-1) > 0).sum()
            got = torch.stack([lo.double(), hi.double(), tokens.double()]).cpu()  # one copy from the device
            was = self.seen_LE23[layer, slot, i]
            was[:] = torch.stack([torch.minimum(was[0], got[0]), torch.maximum(was[1], got[1]), was[2] + got[2]])
            if module in self.channels:
                seen_2F = self.channels[module][2]
                lo_F, hi_F = torch.aminmax(x.double(), dim=0)
                seen_2F[:] = torch.stack([torch.minimum(seen_2F[0], lo_F.cpu()), torch.maximum(seen_2F[1], hi_F.cpu())])

        return record

    def reduce(self, device: torch.device) -> None:
        import torch.distributed as dist

        # max of -lo is the min of lo; tokens and held are summed (only "any" matters): two all-reduces
        extremes = torch.stack([-self.seen_LE23[..., 0], self.seen_LE23[..., 1]]).to(device)
        dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
        counts = torch.cat([self.seen_LE23[..., 2], self.held_LE[..., None]], dim=-1).to(device)
        dist.all_reduce(counts)
        (neg_lo, hi), counts = extremes.cpu(), counts.cpu()
        tokens, held = counts[..., 0], counts[..., 2]  # a slot's tokens: those its input saw
        self.uncalibrated = int(((held > 0) & (tokens == 0)).sum())
        self.ranges = {
            site: (-neg_lo[layer, slot, i].item(), hi[layer, slot, i].item())
            for site, layer, slot, i in self.sites
            if tokens[layer, slot] > 0
        }
        self._smooth(device)

    def _smooth(self, device: torch.device) -> None:
        """Each Smooth-SwiGLU hidden activation's channel scales, and its range as scaled (every rank's
        channels: a layer's all-reduce carries every slot, zeros where a rank holds none)."""
        import torch.distributed as dist

        for layer in sorted({layer for layer, _, _ in self.channels.values()}):
            mine = [(site, slot, seen) for site, (at, slot, seen) in self.channels.items() if at == layer]
            width = mine[0][2].shape[1]
            extremes_E2F = torch.zeros(self.held_LE.shape[1], 2, width, dtype=torch.float64)
            for _, slot, seen_2F in mine:
                extremes_E2F[slot] = torch.stack([-seen_2F[0], seen_2F[1]])
            extremes_E2F = extremes_E2F.to(device)
            dist.all_reduce(extremes_E2F, op=dist.ReduceOp.MAX)
            extremes_E2F = extremes_E2F.cpu()
            for site, slot, _ in mine:
                if site not in self.ranges:
                    continue
                neg_lo_F, hi_F = extremes_E2F[slot]
                peak_F = torch.maximum(neg_lo_F, hi_F)
                scale_F = torch.where(peak_F > 0, 1 / peak_F, torch.ones_like(peak_F))
                self.scales[site] = scale_F.float()
                self.ranges[site] = ((-neg_lo_F * scale_F).min().item(), (hi_F * scale_F).max().item())


class FakeQuant:
    """`with FakeQuant(calibration, "int8"): <forward passes>`: every calibrated tensor quantized."""

    def __init__(self, calibration: Calibration, fmt: str):
        self.fmt = {site: quantizer(fmt, lo, hi) for site, (lo, hi) in calibration.ranges.items() if hi > lo}
        for site, scale_F in calibration.scales.items():  # Smooth-SwiGLU: quantized scaled, then unscaled
            if site in self.fmt:
                self.fmt[site] = _smoothed(self.fmt[site], scale_F)
        self.sites = [site for site, *_ in calibration.sites]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FakeQuant:
        for site in self.sites:
            self._handles.append(site.register_forward_pre_hook(self._quantize))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _quantize(self, module: nn.Module, args: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        # a site without a range (no calibration token: counted; or only zeros seen) passes its input on unchanged
        fake = self.fmt.get(module)
        return (fake(args[0]),) if fake else args


def _smoothed(fake, scale_F: torch.Tensor):
    return lambda x: fake(x * scale_F.to(x.device, x.dtype)) / scale_F.to(x.device, x.dtype)
