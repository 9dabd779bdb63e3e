"""The decision core shared by the live search and replay: stop conditions, repeats, rung verdicts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from moesearch.core.sections import PruningSpec
from moesearch.supervisor import decide

MIN = ["minimize", "minimize"]


def test_the_baselines_are_the_uniform_assignments_every_layer_allows():
    assert [b.text for b in decide.baselines([["gelu", "swiglu"], ["swiglu", "gelu", "relu"]])] == [
        "gelu,gelu",
        "swiglu,swiglu",
    ]


RUNNING = {
    "decided": 3,
    "target": 8,
    "evaluated": 3,
    "space_size": 16,
    "in_a_row": 0,
    "spent": {"steps": 10, "device_s": 1.0},
    "budget": {"steps": 1000},
}


def test_a_search_with_trials_to_go_budget_left_and_fresh_proposals_goes_on():
    assert decide.why_stop(**RUNNING) is None


@pytest.mark.parametrize(
    "state, says",
    [
        ({"decided": 8}, "its 8 trials"),
        ({"spent": {"steps": 1000, "device_s": 0}, "budget": {"steps": 1000}}, "1,000 of 1,000 steps"),
        ({"spent": {"steps": 0, "device_s": 7200}, "budget": {"device_h": 2}}, "2 of 2 device-hours"),
        ({"evaluated": 16}, "all 16 assignments"),
        ({"in_a_row": 100}, "only evaluated assignments 100 times"),
    ],
)
def test_each_stop_condition_says_why(state, says):
    assert says in decide.why_stop(**{**RUNNING, **state})


def test_a_decided_assignment_is_a_repeat_pruned_or_not():
    known = {"gelu,gelu": (0, [2.5, 1e6]), "gelu,swiglu": (4, None)}  # 4 was pruned: decided, never trained again
    assert decide.repeat_of(known, "gelu,swiglu") == (4, None)
    assert decide.repeat_of(known, "gelu,gelu") == (0, [2.5, 1e6]) and decide.repeat_of(known, "swiglu,gelu") is None


ASHA = PruningSpec(method="mo-asha", rungs=[10], eta=2, min_records=3)


@pytest.mark.parametrize(
    "origin, seed, peer",
    [
        ("search", 0, True),
        ("search", 1, False),
        ("verify", 0, False),
        ("train", 0, False),
        (None, 0, False),
        ("search", None, False),
    ],
)
def test_a_rung_ranks_against_the_search_trials_of_its_own_seed_only(origin, seed, peer):
    assert decide.rung_peer(origin, seed, 0) is peer


def test_a_dominated_trial_is_pruned_and_a_front_member_kept():
    peers = [[2.0, 100.0], [1.8, 200.0], [1.9, 150.0]]
    assert not decide.rung_verdict(10, [2.5, 150.0], peers, MIN, ASHA).keep  # dominated by [1.9, 150]
    kept = decide.rung_verdict(10, [1.7, 300.0], peers, MIN, ASHA)
    assert kept.keep and "place" in kept.reason


def test_too_few_records_or_pruning_off_keeps_everything():
    worst = [9.0, 900.0]
    assert decide.rung_verdict(10, worst, [[1.0, 1.0]], MIN, ASHA).keep  # 2 records < min_records 3
    assert decide.rung_verdict(10, worst, [[1.0, 1.0]] * 5, MIN, PruningSpec()).keep


def test_maximised_objectives_are_ranked_the_right_way_round():
    peers = [[2.0, 100.0], [2.0, 120.0], [2.0, 110.0]]
    directions = ["minimize", "maximize"]  # val_loss, tokens_per_s
    assert decide.rung_verdict(10, [2.0, 130.0], peers, directions, ASHA).keep
    assert not decide.rung_verdict(10, [2.0, 90.0], peers, directions, ASHA).keep


def test_ties_within_a_rank_keep_the_spread_of_the_front():
    front = np.array([[1.0, 5.0], [2.0, 4.0], [2.1, 3.9], [3.0, 3.0], [5.0, 1.0]])  # all non-dominated
    order = decide.selection_order(front)
    assert set(order[:2]) == {0, 4}, "the extremes first (infinite crowding distance)"
    assert list(order).index(2) > list(order).index(3), "[2.1, 3.9] crowds [2.0, 4.0]; [3.0, 3.0] stands alone"
    distance = decide.crowding_distance(front)
    assert np.isinf(distance[[0, 4]]).all() and distance[3] == pytest.approx((5.0 - 2.1) / 4 + (3.9 - 1.0) / 4)


def test_a_verdict_does_not_depend_on_which_of_tied_records_asks():
    """Three objectives, three records tied on the exact cost: each, asking, gets the place the others give it."""
    three = ["minimize"] * 3
    records = [[2.0, 1.0, 5.0], [1.0, 2.0, 5.0], [1.5, 1.5, 5.0], [3.0, 3.0, 1.0], [0.5, 4.0, 9.0], [4.0, 0.5, 9.0]]
    spec = PruningSpec(method="mo-asha", rungs=[10], eta=2, min_records=3)
    order = list(decide.selection_order(np.array(records)))
    for i, mine in enumerate(records):
        peers = records[:i] + records[i + 1 :]
        verdict = decide.rung_verdict(10, mine, peers, three, spec)
        assert verdict.keep == (order.index(i) < 3), (i, verdict.reason)
    shuffled = [2, 0, 1, 5, 4, 3]
    assert np.array_equal(
        decide.crowding_distance(np.array(records)[shuffled]), decide.crowding_distance(np.array(records))[shuffled]
    ), "order-free"


def test_a_pruned_proposal_is_followed_by_a_random_undecided_one():
    choices = [["gelu", "swiglu"]] * 3
    every = [",".join(a) for a in itertools.product(*choices)]
    known = dict.fromkeys(every[:-1], (0, None))  # all but one decided
    assert decide.instead_of_pruned(known, choices, np.random.default_rng(0)).text == every[-1]
    assert decide.instead_of_pruned(dict.fromkeys(every, (0, None)), choices, np.random.default_rng(0)) is None
    drawn = {decide.instead_of_pruned({}, choices, np.random.default_rng(s)).text for s in range(40)}
    assert len(drawn) > 4, "drawn at random, not the same one each time"


CRASH = "worker group exited with code 1 (log: results/s/logs/group-1.log); output tail:\n"


@pytest.mark.parametrize(
    "tail, kind",
    [
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "out of memory"),
        (
            "RuntimeError: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory",
            "out of memory",
        ),
        ("RuntimeError: mat1 and mat2 shapes cannot be multiplied (64x96 and 128x384)", "a shape error"),
        ("torch.distributed.DistBackendError: NCCL error: remote process exited", None),  # the machine's, maybe
        ("timeout: trial still running after 1800 s", None),
    ],
)
def test_a_crash_that_would_repeat_is_marked_and_remembered_per_seed(tmp_path, tail, kind):
    """Out of memory or a shape error meets the same assignment and seed again: remembered as a divergence
    is, so a repeated proposal pays no group restart; a crash that names neither is tried again."""
    import optuna

    from moesearch.core import space
    from moesearch.supervisor import accounting, studies, telling

    reason = decide.repeating(CRASH + tail)
    assert reason == (f"repeats: {kind}; {CRASH}{tail}" if kind else CRASH + tail)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'db.sqlite'}")
    study = studies.open_study(storage, "s", space.load("tiny"), seed=0, queue=False)
    trial = telling.reserve(study, space.load("tiny"), ["gelu", "swiglu"], seed=0, origin="search")
    telling.tell_result(study, trial, None, reason)
    assert ("gelu,swiglu" in accounting.snapshot(study, 0).failed) == (kind is not None)
    assert "gelu,swiglu" not in accounting.snapshot(study, 1).failed, "another seed trains it"
