"""The main-effects design: balanced and orthogonal for 2-, 3- and 4-choice layers, queued after the baselines."""

from __future__ import annotations

import itertools
from collections import Counter

import optuna
import pytest
from click.testing import CliRunner
from conftest import MICRO, SPACES, write_space

from moesearch.cli import cli
from moesearch.core import design
from moesearch.core import space as space_mod
from moesearch.core.errors import InputError
from moesearch.supervisor import studies

G2, G3, G4 = ["gelu", "swiglu"], ["gelu", "swiglu", "relu2"], ["gelu", "swiglu", "relu2", "geglu"]
CHOICES = {
    "8 layers of 2": [G2] * 8,
    "4 layers of 2": [G2] * 4,
    "3 layers of 3": [G3] * 3,
    "5 layers of 4": [G4] * 5,
    "mixed 4 and 2": [G4, G2, G2, G4],
    "mixed 3 and 2": [G3, G2, G3],
    "mixed with a fixed layer": [G2, ["gelu"], G3, G3],
    "one layer of 2": [G2],
    "one layer of 3": [G3],
}


@pytest.mark.parametrize("name", CHOICES)
def test_the_design_is_balanced_and_orthogonal(name):
    choices = CHOICES[name]
    runs = design.runs(choices)
    full = 1
    for c in choices:
        full *= len(c)
    assert len(runs) <= full, "never more runs than assignments"
    parameters = 1 + sum(len(c) - 1 for c in choices)
    assert len(runs) >= min(full, parameters + design.ERROR_DOF), "the noise model keeps residual dof to test with"
    for layer, allowed in enumerate(choices):  # balanced: each choice equally often
        counts = Counter(run[layer] for run in runs)
        assert set(counts) == set(allowed) and len(set(counts.values())) == 1, (layer, counts)
    for a, b in itertools.combinations([i for i, c in enumerate(choices) if len(c) > 1], 2):  # orthogonal
        pairs = Counter((run[a], run[b]) for run in runs)
        assert len(pairs) == len(choices[a]) * len(choices[b]) and len(set(pairs.values())) == 1, (a, b, pairs)


def test_layers_no_array_mixes_are_refused_in_one_line():
    """pyDOE3 has no array with both 3- and 4-level columns (nor a 12-level one)."""
    assert design.fit([G4, G3]) is None
    with pytest.raises(InputError, match="hosts 2 layers of 3 or 4 choices; allowed: design = 'none'"):
        design.runs([G4, G3])


@pytest.mark.parametrize("choices", [[G2] * 4, [G3] * 3], ids=["4 layers of 2", "3 layers of 3"])
def test_the_design_holds_both_uniform_baselines_where_its_table_allows(choices):
    runs = design.runs(choices)
    assert [c[0] for c in choices] in runs and [c[-1] for c in choices] in runs


def test_the_smallest_array_that_leaves_the_noise_model_a_test_is_chosen():
    """A saturated design (3 layers in L4, 7 in L8) fits its runs exactly: no residual, no test of any effect.
    A space smaller than that need takes no more runs than it has assignments."""
    sizes = [len(design.runs(c)) for c in ([G2] * 2, [G2] * 3, [G2] * 7, [G2] * 8, [G3] * 4, [G4] * 5)]
    assert sizes == [4, 8, 12, 12, 18, 32]


def test_a_space_with_a_design_queues_it_after_the_baselines(tmp_path):
    space = space_mod.load(SPACES / "default.toml")
    assert space.search.design == "orthogonal" and space.search.trials > len(design.runs(space.layer_choices()))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = studies.open_study(storage, "s", space, seed=0)
    queued = [tuple(t.system_attrs["fixed_params"][f"layer_{i:02d}"] for i in range(4)) for t in study.trials]
    assert queued[:2] == [("gelu",) * 4, ("swiglu",) * 4]
    runs = {tuple(r) for r in design.runs(space.layer_choices())}
    assert set(queued[2:]) == runs - set(queued[:2]) and len(queued) == len(set(queued))
    assert len(queued) == len(runs) < space.search.trials, "the design is queued; the sampler proposes the rest"


ORTHOGONAL = ("[search]\n", '[search]\ndesign = "orthogonal"\n')


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        (
            [ORTHOGONAL, ("n_layers = 2", "n_layers = 40")],
            "search.design 'orthogonal': no orthogonal array of pyDOE3's",
        ),
        ([ORTHOGONAL, ("timeout_s", "trials = 3\ntimeout_s")], "search.trials 3 is below the 4 trials"),
        ([("[search]\n", '[search]\ndesign = "factorial"\n')], "factorial"),
    ],
)
def test_a_design_the_space_cannot_take_fails_validation_with_one_line(tmp_path, edits, expected):
    text = MICRO
    for old, new in edits:
        text = text.replace(old, new, 1)
    out = CliRunner().invoke(cli, ["spaces", "validate", str(write_space(tmp_path, text))])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], out.output
