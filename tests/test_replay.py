"""`moesearch replay`: the search's own decisions answered from an exhaustive table, for every arm."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_results import record, write

from moesearch import results
from moesearch.analysis import pareto
from moesearch.cli import cli
from moesearch.errors import InputError
from moesearch.space import PruningSpec
from moesearch.supervisor import replay
from moesearch.supervisor.study import SAMPLERS

CHOICES = ["gelu", "swiglu", "relu"]


def exhaustive(folder, skip: int = 0):
    """Every assignment of 2 layers x 3 activations, with a clear front; `skip` leaves the last ones out."""
    rng = np.random.default_rng(0)
    combos = list(itertools.product(CHOICES, repeat=2))[: 9 - skip]
    write(folder, *(record(n, ",".join(c), 2.0 + rng.random(), 100 + 50 * rng.random()) for n, c in enumerate(combos)))
    return results.load_trials(folder, "s")


CURVE_STEPS = (10, 20, 40)  # evaluated steps of the curved table; 40 is the last


def curved(folder, n_layers: int = 5):
    """Every assignment of n_layers x {gelu, swiglu} with learning curves: swiglu layers cost more and
    help the final loss by a layer-dependent amount; val_loss at step 10 and 20 tracks the final one
    (plus noise), as real curves roughly do. Objectives: val_loss and FLOPs."""
    rng = np.random.default_rng(1)
    effect = rng.uniform(0.02, 0.12, n_layers)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for n, combo in enumerate(itertools.product(["gelu", "swiglu"], repeat=n_layers)):
        swiglu = np.array([a == "swiglu" for a in combo])
        final = 3.0 - effect[swiglu].sum() + rng.normal(0, 0.01)
        at = {10: final + 1.0 + rng.normal(0, 0.03), 20: final + 0.4 + rng.normal(0, 0.02), 40: final}
        rows = [{"step": s, "tokens": s, "train_loss": at.get(s, final), "aux_loss": 0.0, "lr": 1e-3,
                 "step_time_s": 0.1, "val_loss": at.get(s)} for s in range(1, 41)]
        metrics = {"val_loss": final, "train_flops_per_token": 1000 + 500 * int(swiglu.sum()), "tokens_per_s": 1.0}
        results.write_trial(folder, results.make_record(
            study="c", trial=n, origin="search", layers=list(combo), state="COMPLETE", failure_reason=None,
            objectives={"val_loss": "minimize", "train_flops_per_token": "minimize"},
            reference_point={"val_loss": 3.5, "train_flops_per_token": 1000 + 500 * n_layers + 100}, metrics=metrics,
            steps=rows, layer_rows=[], config_json="{}", seed=0, replicate_of=None, data_sha256="ab",
            hardware={"world_size": 2}, ep_size=2, random_streams="crn", started_at=start, finished_at=start + timedelta(seconds=1)))
    return results.load_trials(folder, "c"), results.load_steps(folder, "c")


MO_ASHA = PruningSpec(method="mo-asha", rungs=[10, 20], eta=3, min_records=4)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_replays_and_reaches_the_true_front_by_exhausting_the_space(tmp_path, sampler):
    table = replay.load_table(exhaustive(tmp_path), "t")
    run = replay.replay(table, replay.Arm(sampler), seed=1, n_trials=9)
    assert len(run.relative) == 9 and np.all(np.diff(run.relative) >= 0) and run.relative[-1] == pytest.approx(1.0)
    assert list(run.spent) == list(range(1, 10)), "without learning curves, compute is counted in trials"
    assert run.relative[2] < 1.0 or sampler == "brute", "three baselines rarely hold the whole front"


def test_a_replay_is_deterministic_per_seed_and_baselines_come_first(tmp_path):
    table = replay.load_table(exhaustive(tmp_path), "t")
    first, again = (replay.replay(table, replay.Arm("tpe"), 3, n_trials=6) for _ in range(2))
    assert np.array_equal(first.relative, again.relative)
    baselines = pd.DataFrame([table.values[f"{a},{a}"] for a in CHOICES], columns=list(table.objectives))
    first_three = pareto.hypervolume(baselines, table.objectives, table.reference) / table.true_hypervolume
    arms = [replay.Arm("tpe"), replay.Arm("hand")]
    side_by_side, in_turn = (replay.compare(table, arms, range(3), n_trials=6, jobs=j) for j in (2, 1))
    assert all(np.array_equal(a.relative, b.relative) for arm in side_by_side
               for a, b in zip(side_by_side[arm], in_turn[arm], strict=True)), "--jobs changes nothing but the time"
    assert replay.replay(table, replay.Arm("random"), 0, n_trials=3).relative[-1] == pytest.approx(first_three)


def test_a_table_with_curves_knows_every_assignment_at_every_evaluated_step(tmp_path):
    trials, steps = curved(tmp_path)
    table = replay.load_table(trials, "t", steps)
    assert table.full_steps == 40 and sorted(table.at_step) == [10, 20]
    some = "gelu,swiglu,gelu,gelu,swiglu"
    assert table.at_step[10][some][1] == table.values[some][1], "exact costs are exact at every rung"
    assert table.at_step[10][some][0] > table.at_step[20][some][0] > table.values[some][0]


@pytest.mark.parametrize("proposer", ["tpe", "random", "hand"])
def test_pruning_stops_trials_at_rungs_and_spends_less_per_trial(tmp_path, proposer):
    trials, steps = curved(tmp_path)
    table = replay.load_table(trials, "t", steps)
    plain = replay.replay(table, replay.Arm(proposer), seed=2, budget_steps=20 * 40)
    pruned = replay.replay(table, replay.Arm(proposer, MO_ASHA), seed=2, budget_steps=20 * 40)
    assert plain.pruned == 0 and set(np.diff(plain.spent)) <= {40}
    assert set(np.diff(pruned.spent, prepend=0)) <= {10, 20, 40}, "a pruned trial costs its rung"
    if proposer != "hand":  # the hand search may stall at a local optimum before the budget
        assert pruned.pruned > 0 and len(pruned.spent) > len(plain.spent), "the same budget decides more trials"
    assert np.all(np.diff(pruned.relative) >= 0) and pruned.relative[-1] <= 1.0 + 1e-9


def test_the_first_records_of_a_rung_are_never_pruned_and_the_baselines_never(tmp_path):
    trials, steps = curved(tmp_path)
    table = replay.load_table(trials, "t", steps)
    for seed in range(5):
        run = replay.replay(table, replay.Arm("random", MO_ASHA), seed=seed, n_trials=12)
        first = np.diff(run.spent, prepend=0)[: MO_ASHA.min_records - 1]
        assert set(first) == {40}, "fewer than min_records records at a rung: nothing is stopped"
    # every rung decides from its first record: the second baseline ties the first on the front (better
    # and costlier), the tie goes to the earlier record, and 1 of 2 is kept; a baseline is never stopped
    eager = PruningSpec(method="mo-asha", rungs=[10, 20], eta=3, min_records=1)
    for seed in range(5):
        run = replay.replay(table, replay.Arm("random", eager), seed=seed, n_trials=12)
        assert list(np.diff(run.spent, prepend=0)[:2]) == [40, 40], "the two baselines (trials 1, 2) trained out"
        assert run.pruned > 0, "yet pruning stops others"


def test_pruning_a_table_on_an_objective_measured_only_at_the_end_is_refused_as_its_space_would_be():
    """The replay used to rank quant_gap_int8 at a rung by its final value, which no live rung has."""
    objectives = {"val_loss": "minimize", "quant_gap_int8": "minimize"}
    table = replay.Table(objectives, {"val_loss": 3.5, "quant_gap_int8": 1.0}, [CHOICES],
                         {a: [3.0, 0.1] for a in CHOICES}, 1.0, full_steps=40, at_step={10: {a: [3.2, 0.1] for a in CHOICES}})
    pruned = replay.Arm("random", PruningSpec(method="mo-asha", rungs=[10], min_records=1))
    says = "--pruning mo-asha: the table's objective 'quant_gap_int8' is measured only after the last step"
    with pytest.raises(InputError, match=says):
        replay.replay(table, pruned, seed=0)
    with pytest.raises(InputError, match=says):
        replay.compare(table, [replay.Arm("random"), pruned], range(2), jobs=2)
    assert replay.replay(table, replay.Arm("random"), seed=0).pruned == 0, "without pruning the table replays"


def test_the_hand_search_starts_from_the_better_baseline_and_flips_one_layer_at_a_time(tmp_path):
    trials, steps = curved(tmp_path)
    table = replay.load_table(trials, "t", steps)
    hand = replay.HandSearch(table, seed=0)
    proposed = []
    for _ in range(8):
        proposed.append(hand.ask())
        hand.tell(table.values[proposed[-1]])
    assert proposed[:2] == ["gelu,gelu,gelu,gelu,gelu", "swiglu,swiglu,swiglu,swiglu,swiglu"]
    better = min(proposed[:2], key=lambda a: table.values[a][0])
    assert sum(a != b for a, b in zip(proposed[2].split(","), better.split(","), strict=True)) == 1


def test_replay_command_prints_the_compute_table_and_writes_curves_and_a_plot(tmp_path):
    curved(tmp_path)
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "c")), "--samplers", "random,hand",
                                   "--pruning", "none,mo-asha", "--rungs", "10,20", "--min-records", "4",
                                   "--first-seed", "5", "--seeds", "3", "--budget", "800", "--jobs", "2",
                                   "--out", str(tmp_path / "curves.csv"), "--plot", str(tmp_path / "curves.png")])
    assert out.exit_code == 0, out.output
    assert "32 assignments" in out.output and "seeds 5-7" in out.output and "compute to 95%" in out.output
    arms = [line.split()[0] for line in out.output.splitlines()[2:6]]
    assert arms == ["random", "hand", "random+mo-asha", "hand+mo-asha"]
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert set(curves["seed"]) == {5, 6, 7} and curves["relative_hypervolume"].between(0, 1 + 1e-9).all()
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("eta, rungs", [("3", "[10]"), ("2", "[10, 20]")])
def test_replay_s_default_rungs_follow_eta(tmp_path, eta, rungs):
    """Successive halving's rungs at about 1/eta^2 and 1/eta of 40 steps, at the evaluated 10, 20: eta 3 wants
    4.4 and 13.3 (both nearest 10), eta 2 wants 10 and 20."""
    curved(tmp_path)
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "c")), "--samplers", "random",
                                   "--pruning", "mo-asha", "--eta", eta, "--seeds", "1"])
    assert out.exit_code == 0, out.output
    assert f"rungs {rungs}, eta {eta}," in out.output


@pytest.mark.parametrize("args, says", [(["--samplers", "tpe,cmaes"], "--samplers: 'cmaes'"),
                                        (["--pruning", "hyperband"], "--pruning: 'hyperband'"),
                                        (["--pruning", "mo-asha", "--rungs", "15"], "--rungs: '15'"),
                                        (["--pruning", "mo-asha", "--rungs", "20,10"], "--rungs: '20,10'"),
                                        (["--out", "curves.json"], "--out"), (["--plot", "curves.svg"], "--plot")])
def test_replay_names_a_bad_flag(tmp_path, args, says):
    curved(tmp_path)
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "c")), *args])
    assert out.exit_code == 2 and says in out.output


def test_a_table_missing_assignments_or_curves_is_refused(tmp_path):
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "s"))])
    assert out.exit_code == 2 and "does not exist" in out.output
    exhaustive(tmp_path, skip=2)
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "s"))])
    assert out.exit_code == 2 and "not exhaustive: 2 of 9 assignments missing" in out.output
    file = tmp_path / "t-trials.parquet"
    exhaustive(tmp_path / "full").to_parquet(file)
    out = CliRunner().invoke(cli, ["replay", str(file), "--pruning", "mo-asha"])
    assert out.exit_code == 2 and "t-steps.parquet" in out.output and "learning curves" in out.output


def test_the_summary_bounds_a_ratio_to_an_arm_that_never_got_there():
    """The hand search may stall below 95%: a ratio to its inf is no number, but the budget bounds it."""
    table = replay.Table({"val_loss": "minimize"}, {"val_loss": 3.0}, [CHOICES], {}, 1.0, full_steps=10)
    runs = {"tpe": [replay.Run(np.array([10, 20, 30]), np.array([0.5, 0.96, 1.0]), 0)],
            "random": [replay.Run(np.array([10, 20, 30, 40]), np.array([0.5, 0.6, 0.7, 0.96]), 0)],
            "hand": [replay.Run(np.array([10, 20]), np.array([0.5, 0.8]), 0)]}
    out = replay.summary(table, runs, budget_steps=100).set_index("arm")
    assert out.loc["tpe", "compute to 95%"] == 20 and out.loc["hand", "compute to 95%"] == np.inf
    assert out.loc["tpe", "vs random"] == 0.5 and out.loc["tpe", "vs hand"] == "<0.2"
    assert np.isnan(replay.summary(table, runs).set_index("arm").loc["tpe", "vs hand"]), "no budget: no bound"
