"""The catalogue of feed-forward activations and the width rule that makes them comparable.

Light on purpose (no torch): the space validator and the cost model need names and widths only;
`model.py` maps the same names to torch functions.
"""

from __future__ import annotations

from typing import Literal

Activation = Literal["gelu", "swiglu", "geglu", "reglu", "relu", "relu2", "silu"]

# Gated (GLU-family) FFNs have three matrices: act(x W) * (x V), then W_out (Shazeer 2020).
GATED: dict[str, bool] = {
    "gelu": False,
    "relu": False,
    "relu2": False,  # squared ReLU (So et al. 2021, "Primer")
    "silu": False,
    "swiglu": True,
    "geglu": True,
    "reglu": True,
}
NAMES: tuple[str, ...] = tuple(GATED)


def hidden_width(activation: str, d_ff: int, policy: str, multiple: int) -> int:
    """Hidden width of one FFN of `activation`, given the ungated width `d_ff`.

    policy "params": gated FFNs get 2/3 of `d_ff`, rounded to `multiple`, so parameters and matmul
    FLOPs match the ungated FFN (the T5 GLU-variants rule). policy "width": every FFN gets `d_ff`, so
    gated ones cost 1.5x.
    """
    if not GATED[activation] or policy == "width":
        return d_ff
    return max(multiple, round(2 * d_ff / 3 / multiple) * multiple)


def ffn_params(activation: str, d_model: int, hidden: int) -> int:
    """Weights of one bias-free FFN: two matrices, or three when gated."""
    return (3 if GATED[activation] else 2) * d_model * hidden
