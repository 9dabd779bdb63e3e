"""Light dependencies: what only some users need is an extra, never a core dependency, and a feature that
needs one it lacks says which, in one line (each case run with the package hidden)."""

from __future__ import annotations

import importlib.util
import sys
import tomllib

import pytest
from conftest import ROOT

from moesearch.core.errors import InputError

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _storage():
    from moesearch.supervisor.storage import check_url

    check_url("postgresql://user@host/db")


def _tokenizer():
    from moesearch.core import tokenize

    tokenize.load(str(ROOT / "pyproject.toml"))


def _wandb():
    from moesearch.supervisor.settings import _check_monitor

    _check_monitor(("wandb",))


def _tensorboard():
    from moesearch.supervisor.settings import _check_monitor

    _check_monitor(("tensorboard",))


def _report():
    from moesearch.analysis import interactive

    return interactive.front_html(None)  # the report is written, saying in the page what it lacks


# feature -> (the module it needs, the extra that installs it, what asks for it)
FEATURES = {
    "postgresql storage": ("psycopg", "postgres", _storage),
    "a tokenizer": ("tokenizers", "tokenizer", _tokenizer),
    "the wandb monitor": ("wandb", "wandb", _wandb),
    "the tensorboard monitor": ("tensorboard", "monitor", _tensorboard),
    "the report's interactive front": ("plotly", "report", _report),
}


def _names(requirements: list[str]) -> set[str]:
    return {r.split(">")[0].split("[")[0].split("=")[0].strip().lower() for r in requirements}


@pytest.mark.parametrize("feature", FEATURES)
def test_an_optional_feature_is_an_extra_and_names_it_when_missing(feature, monkeypatch):
    module, extra, ask = FEATURES[feature]
    package = module  # each is installed under its module's name
    assert package not in _names(PROJECT["dependencies"]), f"{package} is a core dependency"
    assert package in _names(PROJECT["optional-dependencies"][extra])
    assert package in _names(PROJECT["optional-dependencies"]["test"]), "the tests exercise it"
    found = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else found(name, *a))
    monkeypatch.setitem(sys.modules, module, None)  # an import fails as if it were not installed
    monkeypatch.setenv("WANDB_MODE", "offline")
    try:
        said = ask()
    except InputError as refused:
        said = str(refused)
    assert f"pip install -e '.[{extra}]'" in said and "\n" not in said
