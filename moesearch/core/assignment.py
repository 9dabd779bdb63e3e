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
