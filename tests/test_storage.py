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
