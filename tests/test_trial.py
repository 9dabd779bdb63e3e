"""A trial's words: an assignment's one text form and layer names, and no stray state or key literals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from moesearch.core import results
from moesearch.core.assignment import Assignment, baseline_name, layer_name
from moesearch.core.trial import State

PACKAGE = Path(__file__).resolve().parent.parent / "moesearch"


def test_an_assignment_round_trips_through_its_text_and_its_optuna_parameters():
    layers = Assignment(["gelu", "swiglu", "relu2"])
    assert layers.text == "gelu,swiglu,relu2" and Assignment.parse(" gelu, swiglu ,relu2") == layers
    assert layers.params() == {"layer_00": "gelu", "layer_01": "swiglu", "layer_02": "relu2"}
    assert Assignment(layers.params().values()) == layers and isinstance(layers, tuple)
    assert baseline_name("swiglu,swiglu") == "all-swiglu"


def test_a_layer_has_one_name_in_optuna_and_in_parquet():
    assert [n for n in results.schema(3).names if n.startswith("layer_")] == [layer_name(i) for i in range(3)]


# A state literal, or a study/trial attribute read or written with a literal key: core/trial.py says these.
STRAY = re.compile(
    r"""["'](?:STATES)["']|user_attrs(?:\[|\.get\()["']|set_user_attr\(["']""".replace("STATES", "|".join(State))
)


@pytest.mark.parametrize(
    "path",
    sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "core" / "trial.py"),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_no_module_spells_a_state_or_an_attribute_key_itself(path):
    strays = [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if STRAY.search(line)
    ]
    assert strays == []
