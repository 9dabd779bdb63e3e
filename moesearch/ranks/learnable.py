"""Learnable activations: nonlinearities with parameters of their own, trained with the FFN they sit in.

Each is an `nn.Module` named in `ranks/model.NONLINEARITIES` (the registry, `core/activations.py`, counts its
parameters), with `learned()`: its parameters as the function reads them (after any reparametrization),
which rank 0 records per layer and expert. Every FFN has its own (each expert of an MoE layer too: DeepSpeed
deep-copies the expert module). Their scalars are not decayed (the optimizer decays matrices only).
What a layer learned is read as a curve (each class's `curve`), and named by the fixed activation nearest it
(`nearest`), so a learnable run can seed a categorical search.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _softplus_inverse(y: float) -> float:
    return math.log(math.expm1(y))


class XIELU(nn.Module):
    """xIELU (Huang & Schlag 2024, arXiv 2411.13010): alpha_p x^2 + beta x for x > 0, and
    alpha_n (expm1(min(x, eps)) - x) + beta x below: a trainable slope of the positive part's gradient and
    of the negative part's saturation. alpha_p = softplus(a_p), alpha_n = beta + softplus(a_n) keep both
    positive; inits alpha_p = alpha_n = 0.8, beta = 0.5, eps = -1e-6, as the paper's."""

    def __init__(self, alpha_p: float = 0.8, alpha_n: float = 0.8, beta: float = 0.5, eps: float = -1e-6):
        super().__init__()
        self.a_p = nn.Parameter(torch.tensor([_softplus_inverse(alpha_p)]))
        self.a_n = nn.Parameter(torch.tensor([_softplus_inverse(alpha_n - beta)]))
        self.beta, self.eps = beta, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha_p = F.softplus(self.a_p).to(x.dtype)
        alpha_n = (self.beta + F.softplus(self.a_n)).to(x.dtype)
        negative = alpha_n * (torch.expm1(x.clamp(max=self.eps)) - x)
        return torch.where(x > 0, alpha_p * x * x, negative) + self.beta * x

    def learned(self) -> dict[str, float]:
        return {"alpha_p": F.softplus(self.a_p).item(), "alpha_n": self.beta + F.softplus(self.a_n).item()}

    @staticmethod
    def curve(learned: dict[str, float], x: torch.Tensor, beta: float = 0.5, eps: float = -1e-6) -> torch.Tensor:
        negative = learned["alpha_n"] * (torch.expm1(x.clamp(max=eps)) - x)
        return torch.where(x > 0, learned["alpha_p"] * x * x, negative) + beta * x


class PolyNorm(nn.Module):
    """PolyNorm (Zhuo et al. 2024, "Polynomial Composition Activations", arXiv 2411.03884): a learned
    combination w1 n(x) + w2 n(x^2) + w3 n(x^3) + b, each power RMS-normalised over the hidden width (n), so
    the powers do not blow up; inits w = 1/3, b = 0, as the paper's."""

    def __init__(self, order: int = 3, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.full((order,), 1.0 / order))
        self.bias = nn.Parameter(torch.zeros(1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bias.to(x.dtype).expand_as(x)
        for i, w in enumerate(self.weight.to(x.dtype), start=1):
            power = x**i
            out = out + w * power * torch.rsqrt(power.float().square().mean(-1, keepdim=True) + self.eps).to(x.dtype)
        return out

    def learned(self) -> dict[str, float]:
        return {**{f"w{i}": w for i, w in enumerate(self.weight.tolist(), start=1)}, "b": self.bias.item()}

    @staticmethod
    def curve(learned: dict[str, float], x: torch.Tensor) -> torch.Tensor:
        """As a function of one input whose hidden layer is standard normal: then the RMS of x^i over the width
        is sqrt(E z^2i) = sqrt((2i - 1)!!), so n(x^i) = x^i / sqrt((2i - 1)!!)."""
        out = torch.full_like(x, learned["b"])
        for i in range(1, len(learned)):
            out = out + learned[f"w{i}"] * x**i / math.sqrt(math.prod(range(1, 2 * i, 2)))
        return out


def nearest(curve_G: torch.Tensor, grid_G: torch.Tensor, fixed: dict[str, object]) -> tuple[str, float]:
    """The fixed activation whose shape is nearest a learned curve on `grid_G`, and how far: each scaled to it
    by least squares (a learned activation may also learn a scale, which the next matrix absorbs); the
    distance is the residual's RMS relative to the curve's."""
    found = {}
    for name, f in fixed.items():
        f_G = f(grid_G)
        a = (curve_G @ f_G) / (f_G @ f_G)
        found[name] = ((curve_G - a * f_G).norm() / curve_G.norm()).item()
    best = min(found, key=found.get)
    return best, found[best]
