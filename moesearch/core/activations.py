"""The activation registry: every feed-forward activation moesearch knows, defined once.

Each entry names its nonlinearity and whether its FFN is gated; `hidden_width` is the width rule that
makes them comparable. Names only, no torch: the space validator and the cost model load fast, and
the ranks map each nonlinearity's name to its torch function (`ranks/model.py`, NONLINEARITIES).
Adding an activation is one line in REGISTRY (and its function in NONLINEARITIES if it is new); a learnable
one is one line here and one module (`ranks/learnable.py`), named in NONLINEARITIES.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator


@dataclass(frozen=True)
class ActivationSpec:
    name: str
    gated: bool
    """Gated (GLU-family) FFNs have three matrices: act(x W) * (x V), then W_out (Shazeer 2020)."""
    nonlinearity: str
    """The pointwise function: of the hidden layer, or of the gate branch when gated."""
    learned: int = 0
    """Parameters of the nonlinearity itself, trained with the FFN (each FFN and expert its own)."""
    smooth: bool = False
    """The hidden activation is quantized per channel scaled (Smooth-SwiGLU, Fishman et al. 2024): the same
    function in full precision, another one in 8 bits (`ranks/quantize.py`)."""


REGISTRY: dict[str, ActivationSpec] = {
    spec.name: spec
    for spec in (
        ActivationSpec("gelu", gated=False, nonlinearity="gelu"),
        ActivationSpec("swiglu", gated=True, nonlinearity="silu"),
        ActivationSpec("geglu", gated=True, nonlinearity="gelu"),
        ActivationSpec("reglu", gated=True, nonlinearity="relu"),
        ActivationSpec("relu", gated=False, nonlinearity="relu"),
        ActivationSpec("relu2", gated=False, nonlinearity="relu2"),  # squared ReLU (So et al. 2021, "Primer")
        ActivationSpec("silu", gated=False, nonlinearity="silu"),
        ActivationSpec("smooth_swiglu", gated=True, nonlinearity="silu", smooth=True),  # Fishman et al. 2024
        ActivationSpec("xielu", gated=False, nonlinearity="xielu", learned=2),  # Huang & Schlag 2024
        ActivationSpec("polynorm", gated=False, nonlinearity="polynorm", learned=4),  # Zhuo et al. 2024 (PolyCom)
    )
}
NAMES: tuple[str, ...] = tuple(REGISTRY)  # in the order activations were added: each keeps its plot colour
CURVE_X = tuple(round(-3 + 0.1 * i, 1) for i in range(61))  # where a learned activation's curve is recorded
MIX = "+"  # "gelu+swiglu": an MoE layer whose experts split in runs, the first half gelu, the second swiglu
TIMES = "*"  # "gelu*3+swiglu": three GELU experts to every SwiGLU one


def run(choice: str) -> tuple[str, ...]:
    """A layer's choice as one run of its experts' activations: ("gelu",), ("gelu", "swiglu") for gelu+swiglu,
    ("gelu", "gelu", "gelu", "swiglu") for gelu*3+swiglu. The layer's experts are this run, stretched."""
    found = []
    for term in choice.split(MIX):
        name, _, count = term.partition(TIMES)
        found += [name] * (int(count) if _count(count) else 1)  # a bad count is `_check_choice`'s to refuse
    return tuple(found)


def _count(text: str) -> bool:
    return text.isascii() and text.isdigit()  # "²".isdigit() is true too


def parts(choice: str) -> tuple[str, ...]:
    """The activations of a layer's choice, each once, in expert order: one, or a mix's."""
    return tuple(dict.fromkeys(run(choice)))


def of_experts(choice: str, num_experts: int) -> list[str]:
    """The activation of each global expert of a layer that takes `choice`: its run stretched over the experts
    (gelu+swiglu of 4: gelu, gelu, swiglu, swiglu), so global expert e's is the same whatever the
    expert-parallel size. `num_experts` is a multiple of the run's length (`Space` checks it)."""
    found = run(choice)
    return [found[e * len(found) // num_experts] for e in range(num_experts)]


def _check_choice(choice: str) -> str:
    terms = [term.partition(TIMES) for term in choice.split(MIX)]
    if unknown := [name for name, _, _ in terms if name not in REGISTRY]:
        raise ValueError(
            f"unknown activation {unknown[0]!r}; allowed: {', '.join(NAMES)}, or a mix of fixed ones joined by "
            f"'{MIX}' for an MoE layer's experts (e.g. gelu+swiglu, gelu*3+swiglu)"
        )
    if bad := [f"{name}{TIMES}{n}" for name, times, n in terms if times and not (_count(n) and int(n) >= 1)]:
        raise ValueError(f"mix {choice!r}: count in {bad[0]!r}; allowed: a whole number of experts >= 1")
    found = [name for name, _, _ in terms]
    if len(found) == 1 and terms[0][1]:
        raise ValueError(f"{choice!r}: a count needs a mix; allowed: {found[0]}, or a mix such as gelu*3+swiglu")
    if len(found) > 1 and (len(set(found)) < len(found) or any(REGISTRY[a].learned for a in found)):
        raise ValueError(f"mix {choice!r}: allowed: two or more different fixed (not learnable) activations")
    counts = dict(zip(found, (int(n) if times else 1 for _, times, n in terms), strict=True))
    common = math.gcd(*counts.values())
    simplest = MIX.join(  # parts in the registry's order, counts in lowest terms: the router sees no order
        a if counts[a] == common else f"{a}{TIMES}{counts[a] // common}" for a in sorted(found, key=NAMES.index)
    )
    if choice != simplest:  # one name per split, so a design or an effect never counts one mix as two
        raise ValueError(
            f"mix {choice!r} is written {simplest!r} (parts in the registry's order, counts in lowest terms); "
            "allowed: that name"
        )
    return choice


Activation = Annotated[str, AfterValidator(_check_choice)]  # what a space file may name: one, or a mix


def is_gated(activation: str) -> bool:
    return REGISTRY[activation].gated


def hidden_width(activation: str, d_ff: int, policy: str, multiple: int) -> int:
    """Hidden width of one FFN of `activation`, given the ungated width `d_ff`.

    policy "params": gated FFNs get 2/3 of `d_ff`, rounded to `multiple`, so parameters and matmul
    FLOPs match the ungated FFN (the T5 GLU-variants rule). policy "width": every FFN gets `d_ff`, so
    gated ones cost 1.5x.
    """
    if not is_gated(activation) or policy == "width":
        return d_ff
    return max(multiple, round(2 * d_ff / 3 / multiple) * multiple)


def is_learnable(activation: str) -> bool:
    return REGISTRY[activation].learned > 0


def ffn_params(activation: str, d_model: int, hidden: int) -> int:
    """Weights of one bias-free FFN: two matrices, or three when gated, and its nonlinearity's own."""
    return (3 if is_gated(activation) else 2) * d_model * hidden + REGISTRY[activation].learned


def choice_params(choice: str, d_model: int, d_ff: int, policy: str, multiple: int) -> list[int]:
    """The weights of each FFN of a layer's run of experts (`run`; one entry for a single activation)."""
    return [ffn_params(a, d_model, hidden_width(a, d_ff, policy, multiple)) for a in run(choice)]
