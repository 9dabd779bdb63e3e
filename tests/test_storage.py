"""Opening a study's storage for a command that trains (`storage.open_for`)."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from conftest import storage_url

from moesearch.supervisor import storage as storage_mod


@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_a_new_storage_file_starts_its_folder_as_results_does(tmp_path, backend):
    """`search --storage journal:new/folder/study.log` works without a mkdir first (a new user hit it)."""
    url = storage_url(backend, tmp_path / "new" / "folder")
    settings = SimpleNamespace(storage=url, results=tmp_path / "results", study="s")
    storage = storage_mod.open_for(settings, explicit=True)
    optuna.create_study(storage=storage, study_name="s")
    assert storage_mod.file_of(url).is_file()


@pytest.mark.parametrize("backend", ["sqlite", "journal"])
def test_one_trial_is_read_by_its_number_alone(tmp_path, backend, monkeypatch):
    """The supervisor's hot paths read one trial by number: the same trial as the whole study's list gives,
    without reading the list (which costs each trial the whole study on a large one)."""
    from moesearch.supervisor import optuna_compat

    study = optuna.create_study(storage=storage_mod.open_storage(storage_url(backend, tmp_path)), study_name="s")
    for _ in range(5):
        trial = study.ask()
        trial.set_user_attr("k", trial.number)
        study.tell(trial, float(trial.number))
    every = study.get_trials(deepcopy=False)
    monkeypatch.setattr(type(study._storage), "get_all_trials", lambda *a, **k: pytest.fail("read the study"))
    for number in (0, 3, 4):
        one = optuna_compat.trial(study, number)
        assert (one.number, one.value, one.user_attrs) == (every[number].number, every[number].value, {"k": number})
