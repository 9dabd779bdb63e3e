"""Every sampler a space file accepts proposes assignments in this environment, past its random start-up.

The GP sampler needs scipy: undeclared, it failed only on machines without it (CI had it by hand).
"""

from __future__ import annotations

import typing

import optuna
import pytest
from conftest import SPACES, write_space

from moesearch.core import space as space_mod
from moesearch.core.assignment import layer_name
from moesearch.supervisor import samplers, studies

ACCEPTED = typing.get_args(space_mod.SearchSpec.model_fields["sampler"].annotation)
PROPOSALS = 14  # past Optuna's 10 random start-up trials (TPE, GP): the model-based proposals run too


def test_the_space_accepts_exactly_the_samplers_moesearch_makes():
    assert set(ACCEPTED) == set(samplers.SAMPLERS)


@pytest.mark.parametrize("sampler", ACCEPTED)
def test_every_accepted_sampler_proposes_in_this_environment(tmp_path, sampler):
    text = (SPACES / "default.toml").read_text().replace("[search]\n", f'[search]\nsampler = "{sampler}"\n', 1)
    space = space_mod.load(write_space(tmp_path, text))
    assert space.search.sampler == sampler
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = studies.open_study(storage, "s", space, seed=0)
    assert study.metric_names == list(space.search.objectives), "dashboards and Optuna's plots name the axes"
    choices = space.layer_choices()
    for n in range(PROPOSALS):
        trial = study.ask()
        layers = [trial.suggest_categorical(layer_name(i), c) for i, c in enumerate(choices)]
        space.check_assignment(layers)
        if n % 4 == 3:  # pruned trials (search.pruning) are among what every sampler learns from
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        swiglus = layers.count("swiglu")  # a smooth made-up trade-off: more SwiGLU, lower loss, more FLOPs
        study.tell(trial, [2.1 - 0.01 * swiglus, 8e6 + 1e6 * swiglus])
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == PROPOSALS - PROPOSALS // 4
