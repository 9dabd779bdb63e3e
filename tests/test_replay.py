"""`moesearch replay`: the search's own decisions answered from an exhaustive table, for every arm."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_results import record, write

from moesearch.analysis import pareto
from moesearch.cli import cli
from moesearch.core import results
from moesearch.core.errors import InputError
from moesearch.core.sections import PruningSpec
from moesearch.replay import arms, truth
from moesearch.replay import table as tables
from moesearch.supervisor.samplers import SAMPLERS

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
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n, combo in enumerate(itertools.product(["gelu", "swiglu"], repeat=n_layers)):
        swiglu = np.array([a == "swiglu" for a in combo])
        final = 3.0 - effect[swiglu].sum() + rng.normal(0, 0.01)
        at = {10: final + 1.0 + rng.normal(0, 0.03), 20: final + 0.4 + rng.normal(0, 0.02), 40: final}
        rows = [
            {
                "step": s,
                "tokens": s,
                "train_loss": at.get(s, final),
                "aux_loss": 0.0,
                "lr": 1e-3,
                "step_time_s": 0.1,
                "val_loss": at.get(s),
            }
            for s in range(1, 41)
        ]
        metrics = {"val_loss": final, "train_flops_per_token": 1000 + 500 * int(swiglu.sum()), "tokens_per_s": 1.0}
        results.write_trial(
            folder,
            results.make_record(
                study="c",
                trial=n,
                origin="search",
                layers=list(combo),
                state="COMPLETE",
                failure_reason=None,
                objectives={"val_loss": "minimize", "train_flops_per_token": "minimize"},
                reference_point={"val_loss": 3.5, "train_flops_per_token": 1000 + 500 * n_layers + 100},
                metrics=metrics,
                steps=rows,
                layer_rows=[],
                config_json="{}",
                seed=0,
                replicate_of=None,
                data_sha256="ab",
                hardware={"world_size": 2},
                ep_size=2,
                random_streams="crn",
                started_at=start,
                finished_at=start + timedelta(seconds=1),
            ),
        )
    return results.load_trials(folder, "c"), results.load_steps(folder, "c")


MO_ASHA = PruningSpec(method="mo-asha", rungs=[10, 20], eta=3, min_records=4)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_replays_and_reaches_the_true_front_by_exhausting_the_space(tmp_path, sampler):
    table = tables.load_table(exhaustive(tmp_path), "t")
    # a seed at which every sampler exhausts the 9 (at seed 1 NSGA-II proposes only repeats after 8 and
    # stops, as the live search would: a real outcome, not this test's subject)
    run = arms.replay(table, arms.Arm(sampler), seed=2, n_trials=9)
    assert len(run.relative) == 9 and run.relative[-1] == pytest.approx(1.0)
    assert list(run.spent) == list(range(1, 10)), "without learning curves, compute is counted in trials"
    assert run.relative[2] < 1.0 or sampler == "brute", "three baselines rarely hold the whole front"


def test_a_replay_is_deterministic_per_seed_and_baselines_come_first(tmp_path):
    table = tables.load_table(exhaustive(tmp_path), "t")
    assert table.choices == [CHOICES] * 2  # the space's order (first trained), as the live design sees it
    first, again = (arms.replay(table, arms.Arm("tpe"), 3, n_trials=6) for _ in range(2))
    assert np.array_equal(first.relative, again.relative)
    baselines = pd.DataFrame([table.values[f"{a},{a}"] for a in CHOICES], columns=list(table.objectives))
    first_three = pareto.hypervolume(baselines, table.objectives, table.reference) / table.true_hypervolume
    two = [arms.Arm("tpe"), arms.Arm("hand")]
    side_by_side, in_turn = (arms.compare(table, two, range(3), n_trials=6, jobs=j) for j in (2, 1))
    assert all(
        np.array_equal(a.relative, b.relative)
        for arm in side_by_side
        for a, b in zip(side_by_side[arm], in_turn[arm], strict=True)
    ), "--jobs changes nothing but the time"
    assert arms.replay(table, arms.Arm("random"), 0, n_trials=3).relative[-1] == pytest.approx(first_three)


def test_a_table_with_curves_knows_every_assignment_at_every_evaluated_step(tmp_path):
    trials, steps = curved(tmp_path)
    table = tables.load_table(trials, "t", steps)
    assert table.full_steps == 40 and sorted(table.at_step) == [10, 20]
    some = "gelu,swiglu,gelu,gelu,swiglu"
    assert table.at_step[10][some][1] == table.values[some][1], "exact costs are exact at every rung"
    assert table.at_step[10][some][0] > table.at_step[20][some][0] > table.values[some][0]


@pytest.mark.parametrize("proposer", ["tpe", "random", "hand"])
def test_pruning_stops_trials_at_rungs_and_spends_less_per_trial(tmp_path, proposer):
    trials, steps = curved(tmp_path)
    table = tables.load_table(trials, "t", steps)
    plain = arms.replay(table, arms.Arm(proposer), seed=2, budget_steps=20 * 40)
    pruned = arms.replay(table, arms.Arm(proposer, MO_ASHA), seed=2, budget_steps=20 * 40)
    assert plain.pruned == 0 and set(np.diff(plain.spent)) <= {40}
    assert set(np.diff(pruned.spent, prepend=0)) <= {10, 20, 40}, "a pruned trial costs its rung"
    if proposer != "hand":  # the hand search may stall at a local optimum before the budget
        assert pruned.pruned > 0 and len(pruned.spent) > len(plain.spent), "the same budget decides more trials"
    assert pruned.relative[-1] <= 1.0 + 1e-9


def test_the_first_records_of_a_rung_are_never_pruned_and_the_baselines_never(tmp_path):
    trials, steps = curved(tmp_path)
    table = tables.load_table(trials, "t", steps)
    for seed in range(5):
        run = arms.replay(table, arms.Arm("random", MO_ASHA), seed=seed, n_trials=12)
        first = np.diff(run.spent, prepend=0)[: MO_ASHA.min_records - 1]
        assert set(first) == {40}, "fewer than min_records records at a rung: nothing is stopped"
    # every rung decides from its first record: the second baseline ties the first on the front (better
    # and costlier), the tie goes to the earlier record, and 1 of 2 is kept; a baseline is never stopped
    eager = PruningSpec(method="mo-asha", rungs=[10, 20], eta=3, min_records=1)
    for seed in range(5):
        run = arms.replay(table, arms.Arm("random", eager), seed=seed, n_trials=12)
        assert list(np.diff(run.spent, prepend=0)[:2]) == [40, 40], "the two baselines (trials 1, 2) trained out"
        assert run.pruned > 0, "yet pruning stops others"


def test_pruning_a_table_on_an_objective_measured_only_at_the_end_is_refused_as_its_space_would_be():
    """The replay used to rank quant_gap_int8 at a rung by its final value, which no live rung has."""
    objectives = {"val_loss": "minimize", "quant_gap_int8": "minimize"}
    table = tables.Table(
        objectives,
        {"val_loss": 3.5, "quant_gap_int8": 1.0},
        [CHOICES],
        {a: [3.0, 0.1] for a in CHOICES},
        1.0,
        full_steps=40,
        at_step={10: {a: [3.2, 0.1] for a in CHOICES}},
    )
    pruned = arms.Arm("random", PruningSpec(method="mo-asha", rungs=[10], min_records=1))
    says = "--pruning mo-asha: the table's objective 'quant_gap_int8' is measured only after the last step"
    with pytest.raises(InputError, match=says):
        arms.replay(table, pruned, seed=0)
    with pytest.raises(InputError, match=says):
        arms.compare(table, [arms.Arm("random"), pruned], range(2), jobs=2)
    assert arms.replay(table, arms.Arm("random"), seed=0).pruned == 0, "without pruning the table replays"


def test_the_hand_search_starts_from_the_better_baseline_and_flips_one_layer_at_a_time(tmp_path):
    trials, steps = curved(tmp_path)
    table = tables.load_table(trials, "t", steps)
    hand = arms.HandSearch(table, seed=0)
    proposed = []
    for _ in range(8):
        proposed.append(hand.ask())
        hand.tell(table.values[proposed[-1]])
    assert proposed[:2] == ["gelu,gelu,gelu,gelu,gelu", "swiglu,swiglu,swiglu,swiglu,swiglu"]
    better = min(proposed[:2], key=lambda a: table.values[a][0])
    assert sum(a != b for a, b in zip(proposed[2].split(","), better.split(","), strict=True)) == 1


def test_replay_command_prints_the_compute_table_and_writes_curves_and_a_plot(tmp_path):
    curved(tmp_path)
    out = CliRunner().invoke(
        cli,
        [
            "replay",
            str(results.trials_dir(tmp_path, "c")),
            "--samplers",
            "random,hand",
            "--pruning",
            "none,mo-asha",
            "--rungs",
            "10,20",
            "--min-records",
            "4",
            "--first-seed",
            "5",
            "--seeds",
            "3",
            "--budget",
            "800",
            "--jobs",
            "2",
            "--out",
            str(tmp_path / "curves.csv"),
            "--plot",
            str(tmp_path / "curves.png"),
        ],
    )
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
    out = CliRunner().invoke(
        cli,
        [
            "replay",
            str(results.trials_dir(tmp_path, "c")),
            "--samplers",
            "random",
            "--pruning",
            "mo-asha",
            "--eta",
            eta,
            "--seeds",
            "1",
        ],
    )
    assert out.exit_code == 0, out.output
    assert f"rungs {rungs}, eta {eta}," in out.output


@pytest.mark.parametrize(
    "args, says",
    [
        (["--samplers", "tpe,cmaes"], "--samplers: 'cmaes'"),
        (["--pruning", "hyperband"], "--pruning: 'hyperband'"),
        (["--pruning", "mo-asha", "--rungs", "15"], "--rungs: '15'"),
        (["--pruning", "mo-asha", "--rungs", "20,10"], "--rungs: '20,10'"),
        (["--out", "curves.json"], "--out"),
        (["--plot", "curves.svg"], "--plot"),
    ],
)
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


@pytest.mark.parametrize("what, says", [("a space file", "is not Parquet"), ("an empty folder", "no column 'state'")])
def test_a_table_that_is_not_a_study_s_records_is_named_in_one_line(tmp_path, what, says):
    table = tmp_path / ("space.toml" if what == "a space file" else "empty")
    table.write_text("name = 'x'\n") if what == "a space file" else table.mkdir()
    out = CliRunner().invoke(cli, ["replay", str(table)])
    assert out.exit_code == 2 and out.output.startswith("moesearch: error: TABLE: ") and says in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1


def test_the_summary_bounds_a_ratio_to_an_arm_that_never_got_there():
    """The hand search may stall below 95%: a ratio to its inf is no number, but the budget bounds it."""
    table = tables.Table({"val_loss": "minimize"}, {"val_loss": 3.0}, [CHOICES], {}, 1.0, full_steps=10)
    runs = {
        "tpe": [arms.Run(np.array([10, 20, 30]), np.array([0.5, 0.96, 1.0]), 0)],
        "random": [arms.Run(np.array([10, 20, 30, 40]), np.array([0.5, 0.6, 0.7, 0.96]), 0)],
        "hand": [arms.Run(np.array([10, 20]), np.array([0.5, 0.8]), 0)],
    }
    out = arms.summary(table, runs, budget_steps=100).set_index("arm")
    assert out.loc["tpe", "compute to 95%"] == 20 and out.loc["hand", "compute to 95%"] == np.inf
    assert out.loc["tpe", "vs random"] == 0.5 and out.loc["tpe", "vs hand"] == "<0.2"
    assert np.isnan(arms.summary(table, runs).set_index("arm").loc["tpe", "vs hand"]), "no budget: no bound"


# Tables with seed replicates, scored by the truth (issue 20, item 5)

EFFECT = np.array([-0.06, 0.03, -0.02, 0.0])  # swiglu instead of gelu, per layer, on val_loss
SHIFT = (0.0, 0.04)  # each seed's shift of every assignment alike (common random numbers: a block)


def replicated(folder, noise: float = 0.01):
    """Every assignment of 4 layers x {gelu, swiglu}, trained with seeds 0 and 1: val_loss has known
    per-layer effects, a seed shift and noise; tokens_per_s (maximised, the cost here) is exact: 10 less
    per swiglu layer, 3 more less for layer 0's."""
    rng = np.random.default_rng(0)
    combos = list(itertools.product(["gelu", "swiglu"], repeat=4))
    rows = []
    for seed, shift in enumerate(SHIFT):
        for combo in combos:
            swiglu = np.array([a == "swiglu" for a in combo])
            rows.append(
                record(
                    len(rows),
                    ",".join(combo),
                    2.0 + EFFECT[swiglu].sum() + shift + rng.normal(0, noise),
                    100.0 - 10 * swiglu.sum() - 3 * swiglu[0],
                    seed=seed,
                )
            )
    write(folder, *rows)
    return results.load_trials(folder, "s")


def test_a_table_keeps_every_training_and_each_query_draws_one_seeded_per_run(tmp_path):
    table = tables.load_table(replicated(tmp_path), "t")
    assert table.seeds == 2 and len(table.frame) == 32 and (table.quality, table.cost) == ("val_loss", "tokens_per_s")
    some = "gelu,swiglu,gelu,gelu"
    assert sorted(t.seed for t in table.trainings[some]) == [0, 1]
    assert table.values[some][0] == pytest.approx(np.mean([t.values[0] for t in table.trainings[some]]))
    seeds_of = table.frame["seed"].to_numpy()
    runs = {s: arms.replay(table, arms.Arm("random"), s, n_trials=16) for s in range(4)}
    again = arms.replay(table, arms.Arm("random"), 0, n_trials=16)
    assert again.drawn == runs[0].drawn, "the same seed draws the same trainings"
    assert len({tuple(seeds_of[list(r.drawn)]) for r in runs.values()}) > 1, "other seeds draw other trainings"
    for run in runs.values():
        drawn = table.frame.iloc[list(run.drawn)]
        assert drawn["assignment"].is_unique and set(drawn["seed"]) == {0, 1}, "one training per query, either seed"


@pytest.mark.slow
def test_a_replicate_draws_a_training_not_drawn_before(tmp_path):
    table = tables.load_table(replicated(tmp_path, noise=0.05), "t")
    rng = np.random.default_rng(0)
    some = "swiglu,gelu,gelu,swiglu"
    first = tables.draw(table, some, rng)
    other = tables.draw(table, some, rng, {first.row})
    assert {first.seed, other.seed} == {0, 1} and tables.draw(table, some, rng, {first.row, other.row}) is None
    seen = [table.trainings[a][0].row for a in list(table.trainings)[:10]]
    extra = truth.replicate(table, seen, most=5, share=0.5, rng=rng)
    assert 0 < len(extra) <= 5 and not set(extra) & set(seen) and len(set(extra)) == len(extra)
    searched = set(table.frame["assignment"].iloc[seen])
    assert set(table.frame["assignment"].iloc[extra]) <= searched, "replicates re-train what the search trained"
    assert len(truth.replicate(table, seen, most=5, share=0.1, rng=rng)) == int(0.1 * 10), "the share caps them"
    # pruned trials cost compute and count toward the share, as in the live search: 20 searched, 2 replicates
    assert len(truth.replicate(table, seen, most=5, share=0.1, rng=rng, pruned=10)) == 2
    stand_ins = truth.trials_frame(table, seen, extra, pruned=10)
    assert list(stand_ins["state"].value_counts().sort_index()) == [10 + len(extra), 10]  # COMPLETE, PRUNED
    assert stand_ins.loc[stand_ins["state"] == "PRUNED", list(table.objectives)].isna().all().all()


def brute_force(table, rows):
    """Regret and resolved members counted by hand, in loops, from an arm's expected front and the truth."""
    from moesearch.analysis import expected

    arm = expected.expected_front(truth.trials_frame(table, rows), table.objectives)[0].set_index("assignment")
    true = table.truth
    worst = 0.0
    for level in sorted(set(true["tokens_per_s"])):  # maximised: "costing at most" is at least this fast
        afford = [a for a in true.index if true.at[a, "tokens_per_s"] >= level]
        known = [a for a in afford if a in arm.index]  # a choice the arm never saw is no candidate of its
        pick = min(known, key=lambda a: arm.at[a, "val_loss"]) if known else max(afford, key=true["val_loss"].get)
        worst = max(worst, true.at[pick, "val_loss"] - min(true.at[a, "val_loss"] for a in afford))
    called = [a for a in arm.index if arm.at[a, "verdict"] == "resolved on the front"]
    right = strict = 0
    for a in called:
        front_there = min(
            true.at[b, "val_loss"] for b in true.index if true.at[b, "tokens_per_s"] >= true.at[a, "tokens_per_s"]
        )
        right += bool(true.at[a, "expected_front"] or true.at[a, "val_loss_lo"] <= front_there)
        strict += bool(true.at[a, "expected_front"])
    return worst, len(called), right, strict


def test_regret_is_zero_having_seen_everything_positive_having_seen_little_and_matches_a_count_by_hand(tmp_path):
    table = tables.load_table(replicated(tmp_path, noise=0.03), "t")
    everything = truth.score(table, list(range(32)))
    assert everything[0] == pytest.approx(0.0, abs=1e-12) and everything[1] == everything[2] > 0
    assert truth.lone_cheapest(table) == ["gelu,gelu,gelu,gelu"], "the fastest (tokens_per_s maximised) is all-gelu"
    assert everything[3] == 1, "all-gelu is on every front: called resolved, and trivially right"
    by_row = {(r.assignment, r.seed): i for i, r in enumerate(table.frame.itertuples())}
    baselines = [by_row["gelu,gelu,gelu,gelu", 0], by_row["swiglu,swiglu,swiglu,swiglu", 1]]
    assert truth.score(table, baselines)[0] > 0.05, "two trainings: no model, and only two candidates seen"
    rng = np.random.default_rng(1)
    for n in (4, 8, 16):
        rows = sorted(rng.choice(32, n, replace=False).tolist())
        mine = truth.score(table, rows)
        by_hand = brute_force(table, rows)
        assert mine[0] == pytest.approx(by_hand[0], abs=1e-12) and mine[1:3] + mine[4:] == by_hand[1:]
        assert mine[4] <= mine[2], "strictly on the front is right within any tolerance"
    assert truth.score(table, rows[:4])[0] > 0, "four trainings leave the model wrong somewhere"
    on = truth.truly_on_front(table)
    assert on[table.truth["expected_front"]].all() and on.sum() < len(on), "the tolerance admits some, not all"


def test_an_arm_that_exhausts_a_single_seed_table_has_no_regret_and_scores_are_per_budget(tmp_path):
    table = tables.load_table(exhaustive(tmp_path), "t")
    run = arms.replay(table, arms.Arm("random"), seed=0, score_points=3)
    assert list(run.score.budgets) == [3, 6, 9] and run.score.regret[-1] == pytest.approx(0.0, abs=1e-12)
    assert not run.score.replicates.any()
    twice = arms.compare(
        table, [arms.Arm("random"), arms.Arm("tpe", replicates="auto")], range(2), score_points=3, jobs=2
    )
    assert np.array_equal(twice["random"][0].score.regret, run.score.regret), "--jobs changes nothing but the time"
    assert not twice["tpe+replicates"][0].score.replicates.any(), "one training each: nothing to replicate with"


def scored_runs(regret: list[list[float]]) -> list[arms.Run]:
    """Runs with only a truth score: one per row of `regret`, at budgets 10, 20, 30, 40."""
    at, zeros = np.array([10.0, 20.0, 30.0, 40.0]), np.zeros(4, dtype=int)
    return [
        arms.Run(np.array([]), np.array([]), 0, truth.Score(at, np.array(r), zeros, zeros, zeros, zeros, zeros))
        for r in regret
    ]


def test_the_truth_summary_gives_the_budget_to_the_target_with_an_interval_and_relative_to_tpe():
    sure = scored_runs([[0.02, 0.004, 0.0, 0.0]] * 20)  # every seed at the target from budget 20
    slow = scored_runs([[0.02, 0.01, 0.01, 0.003]] * 20)  # from 40
    split = scored_runs([[0.02, 0.004, 0.0, 0.0]] * 10 + [[0.02, 0.02, 0.02, 0.02]] * 9)  # a coin: 20 or never
    lucky = scored_runs([[0.003, 0.01, 0.004, 0.002]] * 20)  # right by luck at 10, then not; from 30 for good
    out = truth.truth_summary({"tpe": slow, "design": sure, "hand": split, "gp": lucky}, target=0.005)
    out = out.set_index("arm")
    assert out.loc["gp", "to <=0.005"] == 30, "from where it stays there, not where it first touched it"
    assert out.loc["design", "to <=0.005"] == 20 and out.loc["design", "to <=0.005 95%"] == "20-20"
    assert out.loc["design", "vs tpe"] == 0.5 and out.loc["design", "vs tpe 95%"] == "0.50-0.50"
    assert out.loc["tpe", "vs tpe"] == 1.0 and out.loc["tpe", "vs tpe 95%"] == "1.00-1.00", "itself, not resampled"
    assert out.loc["hand", "to <=0.005"] == 20, "10 of 19 seeds: the median reaches it"
    assert out.loc["hand", "to <=0.005 95%"] == "20-inf", "but a resample of the seeds may not"
    assert out.loc["hand", "vs tpe 95%"] == "0.50-inf"


def test_the_design_arm_queues_the_orthogonal_design_after_the_baselines(tmp_path):
    from moesearch.core import design

    table = tables.load_table(replicated(tmp_path), "t")
    proposer = arms.OptunaProposer(table, "tpe", seed=0, design=True)
    asked = []
    for _ in range(2 + len(design.runs(table.choices))):
        asked.append(proposer.ask())
        proposer.tell(table.values[asked[-1]])
    runs = [",".join(r) for r in design.runs(table.choices)]
    assert asked[:2] == ["gelu,gelu,gelu,gelu", "swiglu,swiglu,swiglu,swiglu"]
    assert asked[2 : 2 + len([r for r in runs if r not in asked[:2]])] == [r for r in runs if r not in asked[:2]]


def test_replay_command_scores_arms_by_the_truth_with_replicates(tmp_path):
    replicated(tmp_path, noise=0.03)
    out = CliRunner().invoke(
        cli,
        [
            "replay",
            str(results.trials_dir(tmp_path, "s")),
            "--samplers",
            "random,design",
            "--replicates",
            "off,auto",
            "--replicate-share",
            "0.5",
            "--score-points",
            "4",
            "--first-seed",
            "3",
            "--seeds",
            "2",
            "--jobs",
            "2",
            "--out",
            str(tmp_path / "c.csv"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "all 32 trainings (16 assignments, up to 2 seeds each, 2 seeds in all, each a block" in out.output
    assert "levels of tokens_per_s" in out.output and "lone cheapest  right beyond it" in out.output
    scored = pd.read_csv(tmp_path / "c-truth.csv")
    assert set(scored["seed"]) == {3, 4} and set(scored["budget"]) == {12, 24, 36, 48}, "3 steps a training"
    assert set(scored["arm"]) == {"random", "design", "random+replicates", "design+replicates"}
    assert scored["called"].gt(0).any() and scored["right"].gt(0).any() and np.isfinite(scored["regret"]).all()
    assert scored.loc[scored["arm"] == "random", "replicates"].eq(0).all()
    lines = out.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["arm", "seeds"] and "right" in line)
    assert [line.split()[0] for line in lines[header + 1 : header + 5]] == [
        "random",
        "design",
        "random+replicates",
        "design+replicates",
    ]


@pytest.mark.parametrize(
    "args, says",
    [
        (["--replicates", "sometimes"], "--replicates: 'sometimes'"),
        (["--replicates", "auto", "--score-points", "0"], "--replicates auto:"),
        (["--replicate-share", "2"], "--replicate-share"),
    ],
)
def test_replay_names_a_bad_replicates_flag(tmp_path, args, says):
    replicated(tmp_path)
    out = CliRunner().invoke(cli, ["replay", str(results.trials_dir(tmp_path, "s")), "--seeds", "1", *args])
    assert out.exit_code == 2 and says in out.output, out.output


def test_a_table_too_small_for_a_noise_model_replays_by_hypervolume_alone(tmp_path):
    write(tmp_path, record(0, "gelu", 2.0, 100.0), record(1, "swiglu", 1.9, 90.0))
    folder = str(results.trials_dir(tmp_path, "s"))
    out = CliRunner().invoke(cli, ["replay", folder, "--samplers", "random", "--seeds", "1"])
    assert out.exit_code == 0 and "no truth to score by" in out.output and "compute to 95%" in out.output, out.output
    out = CliRunner().invoke(cli, ["replay", folder, "--samplers", "random", "--seeds", "1", "--replicates", "auto"])
    assert out.exit_code == 2 and "--score-points: the table has too few trials" in out.output, out.output


def test_a_pruned_trial_is_scored_without_its_training(tmp_path):
    trials, steps = curved(tmp_path)
    table = tables.load_table(trials, "t", steps)
    assert all(len(t) == 1 and sorted(t[0].at_step) == [10, 20] for t in table.trainings.values())
    run = arms.replay(table, arms.Arm("random", MO_ASHA), seed=2, budget_steps=20 * 40, score_points=2)
    assert run.pruned > 0 and list(run.drawn).count(-1) == run.pruned, "a pruned trial has no final values to fit"
    assert list(run.score.budgets) == [400, 800] and np.isfinite(run.score.regret).all()


@pytest.mark.parametrize("sampler", ["nsga2", "gp"])
def test_samplers_that_learn_from_complete_trials_only_do_not_stall_on_pruned_ones(tmp_path, sampler):
    """They re-propose a pruned assignment (it leaves their model unchanged); a random undecided one
    goes next, as in the live search, so the replay decides every assignment instead of stalling."""
    trials, steps = curved(tmp_path, n_layers=4)
    table = tables.load_table(trials, "t", steps)
    eager = PruningSpec(method="mo-asha", rungs=[10, 20], eta=3, min_records=2)
    for seed in range(2):
        run = arms.replay(table, arms.Arm(sampler, eager), seed=seed)
        assert not run.stalled and run.pruned > 0 and len(run.spent) == 16, "every assignment decided"


def _scored_replay(folder, *flags: str):
    args = ["replay", str(results.trials_dir(folder, "s")), "--samplers", "random,hand", "--replicates", "off,auto"]
    return CliRunner().invoke(cli, [*args, "--score-points", "3", "--out", str(folder / "c.csv"), *flags])


def test_a_stopped_replay_resumes_from_the_runs_it_kept_and_adds_only_what_is_new(tmp_path, monkeypatch):
    replicated(tmp_path, noise=0.03)
    fresh = _scored_replay(tmp_path, "--seeds", "3", "--jobs", "2")  # runs kept in the order they end
    assert fresh.exit_code == 0, fresh.output
    whole = pd.read_csv(tmp_path / "c-truth.csv")
    kept = tmp_path / "c-runs.jsonl"
    lines = kept.read_text().splitlines()
    assert len(lines) == 1 + 4 * 3, "the settings, then one line per (arm, seed) run"
    # as a kill leaves it: 4 runs kept, the fifth's line cut short (before its newline: still JSON)
    kept.write_text("\n".join(lines[:5]) + "\n" + lines[5])
    replayed, real = [], arms.replay
    monkeypatch.setattr(arms, "replay", lambda *a, **k: replayed.append((a[1].name, a[2])) or real(*a, **k))
    resumed = _scored_replay(tmp_path, "--seeds", "4")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming: 4 of 16 runs kept" in resumed.output
    assert len(replayed) == 12 and len(set(replayed)) == 12, "every run not kept, once"
    again = pd.read_csv(tmp_path / "c-truth.csv")
    pd.testing.assert_frame_equal(again[again["seed"] < 3].reset_index(drop=True), whole)
    assert set(again["seed"]) == {0, 1, 2, 3}
    replayed.clear()
    assert "resuming: 16 of 16 runs kept" in _scored_replay(tmp_path, "--seeds", "4").output and not replayed
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "c-truth.csv"), again)


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--budget", "20"], "budget_steps differ: None there, 20 now"),
        (["--score-points", "4"], "(score_points differ: 3 there, 4 now)"),
    ],
)
def test_a_replay_with_other_settings_is_not_mixed_with_the_runs_kept(tmp_path, flags, says):
    replicated(tmp_path)
    assert _scored_replay(tmp_path, "--seeds", "1").exit_code == 0
    out = _scored_replay(tmp_path, "--seeds", "1", *flags)
    assert out.exit_code == 2 and says in out.output and "--out: " in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1


def test_a_replay_refused_before_its_first_run_keeps_nothing(tmp_path):
    replicated(tmp_path)
    assert _scored_replay(tmp_path, "--seeds", "1", "--score-points", "0").exit_code == 2  # auto needs scores
    assert not (tmp_path / "c-runs.jsonl").exists()
    assert _scored_replay(tmp_path, "--seeds", "1").exit_code == 0, "nothing kept stands in the way"


@pytest.mark.parametrize(
    "text, says",
    [
        ("my notes\n", "is not a replay checkpoint"),
        ("42\n", "is not a replay checkpoint"),
        (None, "line 2 is damaged"),  # a whole line that does not read, before others: not a kill's
    ],
)
def test_a_file_in_the_checkpoint_s_place_that_is_not_one_is_named_not_overwritten(tmp_path, text, says):
    replicated(tmp_path)
    kept = tmp_path / "c-runs.jsonl"
    if text is None:
        assert _scored_replay(tmp_path, "--seeds", "1").exit_code == 0
        lines = kept.read_text().splitlines()
        text = "\n".join([lines[0], lines[1][:50], *lines[2:]]) + "\n"
        (tmp_path / "c.csv").unlink()
    kept.write_text(text)
    out = _scored_replay(tmp_path, "--seeds", "1")
    assert out.exit_code == 2 and "--out: " in out.output and says in out.output, out.output
    assert kept.read_text() == text and not (tmp_path / "c.csv").exists()


def test_kept_runs_are_reused_by_arm_and_a_pruning_arm_is_kept_with_its_rungs(tmp_path, monkeypatch):
    curved(tmp_path)
    replayed, real = [], arms.replay
    monkeypatch.setattr(arms, "replay", lambda *a, **k: replayed.append(a[1].name) or real(*a, **k))
    args = ["replay", str(results.trials_dir(tmp_path, "c")), "--samplers", "random", "--seeds", "2"]
    args += ["--score-points", "0", "--min-records", "4", "--budget", "400", "--out", str(tmp_path / "c.csv")]
    for pruning, rungs, new in [
        ("none", "10", ["random"] * 2),
        ("none,mo-asha", "10", ["random+mo-asha"] * 2),
        ("none,mo-asha", "10,20", ["random+mo-asha"] * 2),  # other rungs: the pruned arm again, not the other
        ("mo-asha", "10", []),
    ]:
        replayed.clear()
        out = CliRunner().invoke(cli, [*args, "--pruning", pruning, "--rungs", rungs])
        assert out.exit_code == 0, out.output
        assert replayed == new, (pruning, rungs)
    curves = pd.read_csv(tmp_path / "c.csv")
    assert set(curves["arm"]) == {"random+mo-asha"} and set(curves["seed"]) == {0, 1}


POOL_TORCH_THREADS = """
from concurrent.futures import ProcessPoolExecutor
import sys
from moesearch.replay import arms

def threads():
    import torch
    return torch.get_num_threads()

if sys.argv[1] == "before":
    import torch
with ProcessPoolExecutor(1, initializer=arms._hold, initargs=(None,)) as pool:
    print(pool.submit(threads).result())
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: torch runs one thread anyway")
@pytest.mark.parametrize("torch_imported", ["before", "after"])
def test_replay_s_processes_run_torch_on_one_thread(torch_imported):
    """gp's torch threads fought over the cores like BLAS's: torch imported before the pool forks (its
    OpenMP is limited then) or in the process (gp's first run: it reads OMP_NUM_THREADS). A fresh
    interpreter, since this one may have imported torch already."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", POOL_TORCH_THREADS, torch_imported], env=env, capture_output=True)
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == ["1"]


def test_replay_s_processes_run_one_blas_thread_each():
    """Each pool process is one core's worth: a second BLAS thread per process made the noise model's
    SVDs 5-10x slower on 2 cores."""
    from concurrent.futures import ProcessPoolExecutor

    import threadpoolctl

    with ProcessPoolExecutor(1, initializer=arms._hold, initargs=(None,)) as pool:
        pools = pool.submit(threadpoolctl.threadpool_info).result()
    assert pools and {p["num_threads"] for p in pools} == {1}, pools
