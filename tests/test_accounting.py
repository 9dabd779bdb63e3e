"""The round's snapshot tallies each finished trial once, and says what a fresh read of the study says."""

from __future__ import annotations

import optuna

from moesearch.core import space
from moesearch.supervisor import accounting, studies, telling

TINY = space.load("tiny")


def fresh(url: str, seed: int) -> accounting.Snapshot:
    """The snapshot of a Study object that has tallied nothing yet (another group's first read)."""
    return accounting.snapshot(optuna.load_study(study_name="s", storage=url), seed)


def test_a_snapshot_read_round_after_round_equals_one_read_from_scratch(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = studies.open_study(optuna.storages.RDBStorage(url), "s", TINY, seed=0)
    other = optuna.load_study(study_name="s", storage=url)  # a second group on the same study
    first = telling.reserve(study, TINY, ["gelu", "gelu"], seed=0, origin="search")
    second = telling.reserve(study, TINY, ["gelu", "gelu"], seed=0, origin="search")
    third = telling.reserve(other, TINY, ["relu2", "gelu"], seed=0, origin="search")
    rounds = []
    for step in (
        lambda: accounting.set_compute(second, 12, 3.0),
        lambda: telling.tell_result(study, second, [2.0, 100.0], None),  # the later number finishes first
        lambda: telling.tell_result(study, first, [2.5, 100.0], None),
        lambda: telling.tell_result(other, third, None, "diverged: non-finite loss at step 3"),
        lambda: telling.reserve(other, TINY, ["swiglu", "gelu"], seed=1, origin="verify"),
    ):
        step()
        rounds.append(accounting.snapshot(study, seed=0))
        assert rounds[-1] == fresh(url, 0), f"round {len(rounds)}"
    last = rounds[-1]
    assert last.known["gelu,gelu"] == (second.number, [2.0, 100.0]), "the later trial of an assignment, by number"
    assert last.failed == {"relu2,gelu": third.number} and last.done == 3
    assert last.spent == {"steps": 12.0, "device_s": 3.0} and len(last.running) == 0
    assert accounting.snapshot(study, seed=1).known == {} == fresh(url, 1).known, "each seed its own tally"
