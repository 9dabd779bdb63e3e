"""search.replicates = 'auto': replicates go to trained assignments inside noise, and stop once resolved."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import MICRO, write_space
from test_results import record, write

from moesearch.analysis import expected
from moesearch.cli import cli
from moesearch.core import results
from moesearch.supervisor import replicates


def study(tmp_path, effect: float, sd: float, seeds: int, verify_seeds: int = 0):
    """Every assignment of 2 layers x {gelu, swiglu}: swiglu in layer 0 changes val_loss by `effect` and
    costs 10 tokens/s, in layer 1 it changes val_loss by -effect for nothing (so nothing ties in truth);
    `seeds` search trainings each, then `verify_seeds` of origin verify."""
    rng = np.random.default_rng(3)
    rows, n = [], 0
    for combo in itertools.product(["gelu", "swiglu"], repeat=2):
        for seed in range(seeds + verify_seeds):
            loss = 2.0 + effect * ((combo[0] == "swiglu") - (combo[1] == "swiglu")) + rng.normal(0, sd)
            rows.append(
                record(
                    n,
                    ",".join(combo),
                    loss,
                    100.0 - 10 * (combo[0] == "swiglu"),
                    seed=seed,
                    origin="search" if seed < seeds else "verify",
                )
            )
            n += 1
    write(tmp_path, *rows)
    return results.load_trials(tmp_path, "s")


def test_nothing_is_replicated_once_every_trained_assignment_is_resolved(tmp_path):
    trials = study(tmp_path, effect=-0.2, sd=0.001, seeds=3)
    assert replicates.auto_next(trials, share=1.0, first_seed=1) is None


def test_an_assignment_inside_noise_gets_its_lowest_unused_seed(tmp_path):
    trials = study(tmp_path, effect=-0.01, sd=0.03, seeds=2, verify_seeds=1)  # 4 verify of 8 searched
    pick = replicates.auto_next(trials, share=1.0, first_seed=1)
    assert pick is not None
    assignment, seed = pick
    assert seed == 3, "seeds 0, 1 and 2 are taken"
    front = expected.expected_front(trials)[0]
    open_ = front[(front["trained"] > 0) & (front["verdict"] == "inside noise")].set_index("assignment")
    gap = (open_["p_front"] - 0.5).abs()
    assert assignment in open_.index and gap[assignment] == gap.min(), "the most open of those inside noise"


@pytest.mark.parametrize(("state", "seed"), [("PREEMPTED", 3), ("FAIL", 4)])
def test_a_preempted_seed_is_trained_again_a_failed_one_is_not(tmp_path, state, seed):
    trials = study(tmp_path, effect=-0.01, sd=0.03, seeds=2, verify_seeds=1)
    pick = replicates.auto_next(trials, share=1.0, first_seed=1)
    write(tmp_path, record(len(trials), pick[0], None, None, state=state, seed=3, origin="verify"))
    trials = results.load_trials(tmp_path, "s")
    assert replicates._seed_for(trials, pick[0], first_seed=1) == seed


def test_a_partner_that_failed_at_the_lone_seed_is_not_asked_again(tmp_path):
    trials = study(tmp_path, effect=-0.01, sd=0.03, seeds=2)
    write(tmp_path, record(len(trials), "swiglu,gelu", 2.0, 90.0, seed=5, origin="verify"))
    write(tmp_path, record(len(trials) + 1, "gelu,gelu", None, None, state="FAIL", seed=5, origin="verify"))
    trials = results.load_trials(tmp_path, "s")
    assert replicates._partner(trials, first_seed=2) == ("gelu,swiglu", 5), "the next in trial order instead"


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_replicates_stop_when_the_share_is_spent(tmp_path, share):
    trials = study(tmp_path, effect=-0.01, sd=0.03, seeds=2, verify_seeds=1)  # 4 verify of 8 searched
    assert replicates.auto_next(trials, share=share, first_seed=1) is None


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("replicate_share", "1.5", "less than or equal to 1"),
        ("replicate_share", "-0.1", "greater than or equal to 0"),
        ("replicates", '"sometimes"', "'off' or 'auto'"),
    ],
)
def test_a_bad_replicate_setting_fails_validation_with_one_line(tmp_path, key, value, allowed):
    path = write_space(tmp_path, MICRO.replace("[search]\n", f"[search]\n{key} = {value}\n", 1))
    out = CliRunner().invoke(cli, ["spaces", "validate", str(path)])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and f"search.{key}" in lines[0] and value.strip('"') in lines[0] and allowed in lines[0]


def test_under_common_random_numbers_a_lone_replicate_gets_a_partner_at_its_seed(tmp_path):
    """A replicate alone at its seed is a block of its own, fitted exactly: the next replicate trains the
    reference baseline (the study's first assignment) at that seed, so the pair is a comparison."""
    trials = study(tmp_path, effect=-0.01, sd=0.03, seeds=2)
    lone = record(len(trials), "swiglu,gelu", 2.0, 90.0, seed=5, origin="verify")
    write(tmp_path, lone)
    trials = results.load_trials(tmp_path, "s")
    assert set(trials["random_streams"]) == {"crn"}
    assert replicates.auto_next(trials, share=1.0, first_seed=2) == ("gelu,gelu", 5)
    write(tmp_path, record(len(trials), "gelu,gelu", 2.0, 100.0, seed=5, origin="verify"))
    trials = results.load_trials(tmp_path, "s")
    pick, seed = replicates.auto_next(trials, share=1.0, first_seed=2)
    pair = ("gelu,gelu", "swiglu,gelu")
    assert seed == (2 if pick in pair else 5), "a seed other assignments have and the pick lacks, if there is one"
    assert replicates.auto_next(trials.assign(random_streams="global"), share=1.0, first_seed=2)[1] == 2, (
        "one generator: seeds share nothing, the lowest unused one will do"
    )
