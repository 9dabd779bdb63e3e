"""`moesearch promote`: a study's answer trained at the next size of its ladder, through the real CLI with
two gloo ranks, resumed after a preemption; its plan and its errors on known inputs."""

from __future__ import annotations

import math
import signal

import optuna
import pandas as pd
import psutil
import pytest
from click.testing import CliRunner
from conftest import LADDER as TWO_SIZES
from conftest import MICRO, run_cli, start_cli, wait_for_training, write_space
from test_effects import additive, table
from test_results import record, write

from moesearch.analysis import effects, ladder
from moesearch.cli import cli
from moesearch.core import results, space
from moesearch.supervisor import promote, studies

# the proxy's trainings take 6 steps (a search of its 4 assignments in seconds), w64's are long enough
# (about 5 s) to be preempted mid-trial
LADDER = TWO_SIZES.replace("steps = 12\n", "steps = 150\nwarmup_steps = 2\n")


@pytest.mark.slow
def test_promote_trains_the_plan_at_the_next_size_resumes_after_a_preemption_and_reports(tmp_path):
    path = write_space(tmp_path, LADDER)
    where = ["--nproc", "2", "--results", str(tmp_path / "r"), "--no-progress"]
    searched = run_cli("search", str(path), "--trials", "4", *where)
    assert searched.returncode == 0, searched.stderr
    command = ["promote", str(path), "--seeds", "1", *where]
    first = start_cli(*command)
    wait_for_training(tmp_path / "r" / "micro-w64" / "logs", 1, first)  # the second training of the plan
    psutil.Process(first.pid).send_signal(signal.SIGTERM)
    stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert "preempted: run the same command again to finish" in stdout

    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    small = results.load_trials(tmp_path / "r", "micro")
    targets = ladder.targets(small, space.load(path).layer_choices())
    assert targets[:2] == ["gelu,gelu", "swiglu,swiglu"], "the baselines first, then the expected front"
    assert len(targets) == 4, "two layers: only all four assignments test both layers' effects"
    assert "plan: 4 assignments x 1 seed (--seeds): " in again.stdout
    bound = again.stdout.index("at most 4 assignments x 1 seed = 4 trainings (--seeds)")
    assert bound < again.stdout.index("plan: "), "the whole plan, before any training"
    assert "study 'micro-w64'" in again.stdout.splitlines()[0], "the header describes the size trained"
    large = results.load_trials(tmp_path / "r", "micro-w64")
    done = large[large["state"] == "COMPLETE"]
    assert sorted(zip(done["assignment"], done["seed"], strict=True)) == sorted((a, 0) for a in targets), (
        "every planned training once, nothing else"
    )
    assert list(large["state"]).count("PREEMPTED") == 1 and (large["origin"] == "promote").all()
    assert (large["n_layers"] == 2).all() and '"d_model":64' in large["config_json"][0].replace(" ", "")
    assert "rank correlation of expected val_loss over" in again.stdout
    assert "expected front at proxy: " in again.stdout and "expected front at w64: " in again.stdout
    assert again.stdout.splitlines()[-1].startswith("cheapest faithful rung: "), "the ladder's answer last"
    shown = run_cli("pareto", "--results", str(tmp_path / "r"), "--study", "micro-w64")
    assert shown.returncode == 0, shown.stderr
    assert "scale ladder: 'micro-w64' is size w64 of 'micro'" in shown.stdout, "pareto shows the ladder"
    assert "rank correlation of expected val_loss over" in shown.stdout
    assert again.stdout.splitlines()[-1] in shown.stdout, "the same one line in pareto"

    third = run_cli(*command)
    assert third.returncode == 0, third.stderr
    assert "plan: 4 assignments x 1 seed (--seeds): 0 left to train" in third.stdout
    assert len(results.load_trials(tmp_path / "r", "micro-w64")) == len(large), "nothing trained twice"
    storage = f"sqlite:///{tmp_path / 'r' / 'moesearch.db'}"
    linked = optuna.load_study(study_name="micro-w64", storage=storage)
    assert linked.user_attrs[promote.TARGETS] == targets
    assert linked.user_attrs["run"]["results"] == str(tmp_path / "r"), "a worker joining it writes there"
    assert not [t for t in linked.trials if t.state == optuna.trial.TrialState.WAITING], "no sampler: no queue"


DEEPER = (
    MICRO.replace("[model]\n", '[model]\nparametrization = "completep"\n')
    + """
[[scale]]
name = "d4"
n_layers = 4
"""
)


@pytest.mark.slow
def test_a_deeper_size_trains_the_proxy_s_answer_deepened_and_reads_it_in_the_proxy_s_layers(tmp_path):
    path = write_space(tmp_path, DEEPER)
    where = ["--nproc", "2", "--results", str(tmp_path / "r"), "--no-progress"]
    assert run_cli("search", str(path), "--trials", "4", *where).returncode == 0
    done = run_cli("promote", str(path), "--seeds", "1", "--layers", "swiglu,gelu", *where)
    assert done.returncode == 0, done.stderr
    large = results.load_trials(tmp_path / "r", "micro-d4")
    assert sorted(large["assignment"]) == ["swiglu,swiglu,gelu,gelu"], "the named assignment, deepened"
    assert (large["n_layers"] == 4).all() and '"base_n_layers":2' in large["config_json"][0].replace(" ", "")
    assert "depth: d4 has 4 layers, proxy 2; each layer at proxy stands for its block at d4 (0 -> 0-1, 1 -> 2-3)" in (
        done.stdout
    )
    assert "expected front at d4: too few trainings" in done.stdout


W128 = """
[[scale]]
name = "w128"
d_model = 128
d_ff = 384
"""

BAD = {
    "no ladder": (MICRO, [], "SPACE: 'micro' has no [[scale]] ladder to promote to"),
    "an unknown size": (LADDER, ["--size", "w512"], "--size: 'w512' is not a larger size of 'micro'; allowed: w64"),
    "the proxy as a size": (LADDER, ["--size", "proxy"], "--size: 'proxy' is not a larger size"),
    "an assignment of another space": (LADDER, ["--layers", "gelu,relu"], "--layers: layer 1 activation 'relu'"),
    "nothing below to promote": (LADDER, [], "--size w64: the study below it, 'micro', has no completed training"),
    "nothing below the second rung": (
        LADDER + W128,
        ["--size", "w128"],
        "run `moesearch promote SPACE --size w64` first",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_promotion_that_cannot_start_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    body, flags, expected = BAD[case]
    path = write_space(tmp_path, body)
    result = CliRunner().invoke(cli, ["promote", str(path), "--results", str(tmp_path / "r"), *flags])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and expected in result.output, result.output
    assert not (tmp_path / "r" / "micro-w64").exists()


def test_seeds_are_what_a_paired_difference_of_the_smallest_resolved_effect_needs():
    z = 1.959964 + 0.841621  # a plain 5% test at 80% power
    assert ladder.seeds_needed(0.0076, 0.016, z) == math.ceil(2 * (z * 0.0076 / 0.016) ** 2) == 4
    assert ladder.seeds_needed(0.0076, 0.016, 3.57) == 6, "a family-wise level asks for more"
    assert ladder.seeds_needed(0.001, 0.05, z) == 1, "never fewer than one"


def test_seeds_come_from_the_larger_size_s_model_once_it_is_testable(tmp_path):
    for name in ("small", "large", "few"):
        (tmp_path / name).mkdir()
    small = table(tmp_path / "small", additive({0: 0.03}), 3, 2, 0.01)  # resolves layer 0's 0.03
    delta = ladder.effect_size(effects.fit(small))
    assert delta == pytest.approx(0.03, abs=0.01)
    here = effects.fit(small)
    n, why = ladder.seeds_for(small, small.iloc[:0], "val_loss")
    assert n == ladder.seeds_needed(here.sigma, delta, here.multiplier(here.dof)) and "the smaller size's model" in why
    large = table(tmp_path / "large", additive({0: 0.03}), 3, 2, 0.002)  # a quieter larger size
    there = effects.fit(large)
    n, why = ladder.seeds_for(small, large, "val_loss")
    assert (
        n == ladder.seeds_needed(there.sigma, delta, there.multiplier(there.dof)) and "the larger size's model" in why
    )
    assert n < ladder.seeds_for(small, small.iloc[:0], "val_loss")[0]
    few = table(tmp_path / "few", additive({}), 1, 2, 0.01)
    assert ladder.seeds_for(few, few.iloc[:0], "val_loss")[0] == 1, "no testable model: one seed each"


def test_the_plan_retrains_a_preempted_training_but_not_a_failed_one():
    large = pd.DataFrame({"assignment": ["a", "b", "c"], "seed": [0, 0, 0], "state": ["COMPLETE", "FAIL", "PREEMPTED"]})
    assert promote._missing(large, ["a", "b", "c"], 0, 2) == [("c", 0), ("a", 1), ("b", 1), ("c", 1)]


def test_a_ladder_added_after_the_search_keeps_the_study(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    plain = space.load(write_space(tmp_path, MICRO))
    studies.open_study(storage, "s", plain, 0)
    with_ladder = space.load(write_space(tmp_path, LADDER, "ladder.toml"))
    assert studies.open_study(storage, "s", with_ladder, 0).study_name == "s"


def test_a_refused_promotion_of_a_study_without_a_noise_model_writes_nothing(tmp_path):
    """Two trainings of one assignment give no model, so no expected front: refused before any study opens."""
    path = write_space(tmp_path, LADDER)
    (tmp_path / "r").mkdir()
    write(tmp_path / "r", *(record(n, "gelu,gelu", 2.0 + n / 100, 100.0, seed=n, study="micro") for n in range(2)))
    result = CliRunner().invoke(cli, ["promote", str(path), "--results", str(tmp_path / "r"), "--nproc", "2"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "has too few trainings for a noise model" in result.output
    assert not (tmp_path / "r" / "micro-w64").exists() and not (tmp_path / "r" / "moesearch.db").exists()
