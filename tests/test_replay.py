"""`moesearch replay`: the search loop answered from an exhaustive table, for every sampler."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_results import record, write

from moesearch import results
from moesearch.cli import cli
from moesearch.supervisor import replay
from moesearch.supervisor.study import SAMPLERS

CHOICES = ["gelu", "swiglu", "relu"]


def exhaustive(folder, skip: int = 0):
    """Every assignment of 2 layers x 3 activations, with a clear front; `skip` leaves the last ones out."""
    rng = np.random.default_rng(0)
    combos = list(itertools.product(CHOICES, repeat=2))[: 9 - skip]
    write(folder, *(record(n, ",".join(c), 2.0 + rng.random(), 100 + 50 * rng.random()) for n, c in enumerate(combos)))
    return results.load_trials(folder, "s")


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_replays_and_reaches_the_true_front_by_exhausting_the_space(tmp_path, sampler):
    table = replay.load_table(exhaustive(tmp_path), "t")
    curve = replay.replay(table, sampler, seed=1, n_trials=9)
    assert len(curve) == 9 and np.all(np.diff(curve) >= 0) and curve[-1] == pytest.approx(1.0)
    assert curve[2] < 1.0 or sampler == "brute", "three baselines rarely hold the whole front"


def test_a_replay_is_deterministic_per_seed_and_baselines_come_first(tmp_path):
    table = replay.load_table(exhaustive(tmp_path), "t")
    assert np.array_equal(replay.replay(table, "tpe", 3, 6), replay.replay(table, "tpe", 3, 6))
    baselines = pd.DataFrame([table.values[f"{a},{a}"] for a in CHOICES], columns=list(table.objectives))
    from moesearch.analysis import pareto

    first_three = pareto.hypervolume(baselines, table.objectives, table.reference) / table.true_hypervolume
    assert replay.replay(table, "random", 0, 3)[-1] == pytest.approx(first_three)


def test_replay_command_prints_a_summary_and_writes_curves(tmp_path):
    exhaustive(tmp_path)
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "s")), "--samplers", "random,tpe",
                                   "--seeds", "3", "--trials", "8", "--out", str(tmp_path / "curves.csv")])
    assert out.exit_code == 0, out.output
    assert "9 assignments" in out.output and "median@8" in out.output
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert len(curves) == 2 * 3 * 8 and curves["relative_hypervolume"].between(0, 1 + 1e-9).all()


@pytest.mark.parametrize("args, says", [(["--samplers", "tpe,cmaes"], "--samplers: 'cmaes'"),
                                        (["--out", "curves.json"], "--out")])
def test_replay_names_a_bad_flag(tmp_path, args, says):
    exhaustive(tmp_path)
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "s")), *args])
    assert out.exit_code == 2 and says in out.output


def test_a_table_missing_assignments_is_refused(tmp_path):
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "s"))])
    assert out.exit_code == 2 and "does not exist" in out.output
    exhaustive(tmp_path, skip=2)
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "s"))])
    assert out.exit_code == 2 and "not exhaustive: 2 of 9 assignments missing" in out.output
