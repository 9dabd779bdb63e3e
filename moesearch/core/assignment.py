"""An assignment: one activation per transformer block, in block order. Light: stdlib only.

Its one text form, "gelu,swiglu,swiglu,gelu", is what --layers takes, what Optuna's `assignment`
attribute and the Parquet `assignment` column hold; `layer_name(i)` is layer i's one name, both
its Optuna parameter and its Parquet column.
"""

from __future__ import annotations

from collections.abc import Iterable

SEP = ","


def layer_name(i: int) -> str:
    """'layer_03': layer i's Optuna parameter and Parquet column (two digits sort up to 100 layers)."""
    return f"layer_{i:02d}"


class Assignment(tuple[str, ...]):
    """A tuple of activation names that knows its text form and its Optuna parameters."""

    __slots__ = ()

    def __new__(cls, layers: Iterable[str]) -> Assignment:
        return super().__new__(cls, layers)

    @classmethod
    def parse(cls, text: str) -> Assignment:
        """From the text form; spaces around names are forgiven (--layers "gelu, swiglu")."""
        return cls(name.strip() for name in text.split(SEP))

    @property
    def text(self) -> str:
        return SEP.join(self)

    def params(self) -> dict[str, str]:
        """As Optuna parameters: {layer_name(i): activation}."""
        return {layer_name(i): a for i, a in enumerate(self)}

    def __str__(self) -> str:
        return self.text


def uniform(choices: list[list[str]]) -> list[Assignment]:
    """The all-X assignments for every X that every layer allows: the baselines, in the first layer's order."""
    return [Assignment([a] * len(choices)) for a in choices[0] if all(a in c for c in choices)]


def baseline_name(text: str) -> str:
    """'all-gelu' for the uniform assignment 'gelu,gelu,...'."""
    return f"all-{Assignment.parse(text)[0]}"


def block_of(layer: int, n_from: int, n_to: int) -> int:
    """The layer of an `n_to`-layer model that layer `layer` of an `n_from`-layer one stands for, by relative
    depth: layer j of the deeper model belongs to layer j * n_to // n_from of the shallower (`n_from` a
    multiple of `n_to`), so each shallow layer covers the contiguous block in its share of the depth."""
    return layer * n_to // n_from


def deepen(layers: Iterable[str], n_layers: int) -> Assignment:
    """A shallower assignment at `n_layers` layers: each layer's activation over its block of the depth."""
    layers = list(layers)
    return Assignment(layers[block_of(j, n_layers, len(layers))] for j in range(n_layers))


def shallow(layers: Iterable[str], n_layers: int) -> Assignment | None:
    """A deeper assignment at `n_layers` layers (the inverse of `deepen`); None where a block mixes activations."""
    layers = list(layers)
    if len(layers) % n_layers:
        return None
    found = Assignment(layers[:: len(layers) // n_layers])  # each block's first layer
    return found if deepen(found, len(layers)) == Assignment(layers) else None
