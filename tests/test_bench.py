"""The benchmarks compare like with like: bench/bare_loop.py builds the very model a moesearch trial trains."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from moesearch.core import space
from moesearch.core.costs import costs


def load(name: str):
    """A bench script as a module; bench/ goes on the path as `python bench/NAME.py` puts it (its helpers)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module(name)


@pytest.mark.parametrize("layers", [["gelu", "swiglu", "gelu", "swiglu"], ["swiglu"] * 4])
@pytest.mark.slow
def test_the_bare_loop_model_has_the_trial_models_parameters(one_rank, layers):
    throughput, bare_loop = load("throughput"), load("bare_loop")
    spec = space.load(ROOT / "bench" / "throughput.toml")
    assert spec.model == space.load("default").model
    model = bare_loop.Model(throughput.bare_config(spec, layers, ep_size=1))
    assert sum(p.numel() for p in model.parameters()) == costs(spec.model, layers, spec.train.micro_batch).params_total


@pytest.mark.parametrize(("name", "size", "curves"), [("replay6", 64, False), ("hard8", 256, True)])
def test_each_replay_table_is_exhaustive_and_current(name, size, curves):
    """bench/data's tables: every assignment of the shipped space once, in a schema moesearch reads; hard8's
    steps give val_loss at every rung a pruner may use (20, 40, ..., 140) for every assignment."""
    import pandas as pd

    from moesearch.core import results
    from moesearch.replay import table as tables

    trials = pd.read_parquet(ROOT / "bench" / "data" / f"{name}-trials.parquet")
    steps = pd.read_parquet(ROOT / "bench" / "data" / f"{name}-steps.parquet") if curves else None
    table = tables.load_table(trials, name, steps)
    assert len(table.values) == space.load(name).size() == size
    assert set(trials["schema_version"].astype(str)) <= set(results.READABLE), "a version moesearch still reads"
    if curves:
        spec = space.load(name).train
        assert table.full_steps == spec.steps
        assert sorted(table.at_step) == list(range(spec.eval_interval, spec.steps, spec.eval_interval))
        assert all(len(at) == size for at in table.at_step.values()), "every assignment at every rung"


def test_the_crn_replay_table_has_every_assignment_at_seed_0_and_replicates_at_seed_1():
    """bench/data/hard8-lr1e-3 (a study's folder, as `replay` reads it): the truth the arms are scored by."""
    from moesearch.core import results
    from moesearch.replay import table as tables

    folder = ROOT / "bench" / "data" / "hard8-lr1e-3"
    trials = results.load_trials(folder, "hard8-lr1e-3")
    complete = trials[trials["state"] == "COMPLETE"]
    table = tables.load_table(complete, "hard8-lr1e-3", results.load_steps(folder, "hard8-lr1e-3"))
    assert len(table.values) == space.load("hard8").size() == 256
    by_seed = complete.groupby("seed")["assignment"].agg(list)
    assert sorted(by_seed[0]) == sorted(table.values), "every assignment once at seed 0"
    assert set(by_seed.index) <= {0, 1} and len(set(by_seed.get(1, []))) == len(by_seed.get(1, [])) <= 128
    assert table.truth is not None and table.truth["expected_front"].any(), "a noise model to score by"


def test_noise_replay_help_prints_its_own_usage_and_replays_nothing(monkeypatch, capsys):
    """`python bench/noise_replay.py --help` once passed --help on to replay, then drew over the committed plot."""
    noise_replay = load("noise_replay")
    monkeypatch.setattr(noise_replay.subprocess, "run", lambda *a, **k: pytest.fail("replayed on --help"))
    monkeypatch.setattr(noise_replay, "plot", lambda *a: pytest.fail("plotted on --help"))
    noise_replay.main(["--help"])
    assert "python bench/noise_replay.py [TABLE]" in capsys.readouterr().out


def test_noise_replay_plots_the_median_regret_of_every_arm(tmp_path):
    import pandas as pd

    scores = pd.DataFrame(
        [
            (arm, budget, seed, 0.01 * seed / budget)
            for arm in ("tpe", "tpe+replicates")
            for budget in (8, 16)
            for seed in range(3)
        ],
        columns=["arm", "budget", "seed", "regret"],
    )
    scores.to_csv(tmp_path / "truth.csv", index=False)
    load("noise_replay").plot(tmp_path / "truth.csv", tmp_path / "regret.png", "a title")
    assert (tmp_path / "regret.png").read_bytes().startswith(b"\x89PNG")


def test_noise_replay_reads_the_budget_to_each_target_and_against_tpe_from_the_scores(tmp_path):
    import pandas as pd

    regret = {"tpe": [0.02, 0.004, 0.001, 0.0], "design": [0.004, 0.001, 0.0, 0.0]}
    scores = pd.DataFrame(
        [(arm, 8.0 * (k + 1), seed, r) for arm, rs in regret.items() for seed in range(5) for k, r in enumerate(rs)],
        columns=["arm", "budget", "seed", "regret"],
    )
    scores.to_csv(tmp_path / "truth.csv", index=False)
    out = load("noise_replay").targets(tmp_path / "truth.csv").set_index("arm")
    assert out.loc["design", ["to <=0.005", "to <=0.002"]].tolist() == [8.0, 16.0]
    assert out.loc["tpe", ["to <=0.005", "to <=0.002"]].tolist() == [16.0, 24.0]
    assert out.loc["design", "vs tpe @0.005"] == 0.5 and out.loc["design", "vs tpe @0.002"] == pytest.approx(2 / 3)


BENCH_SPACES = {  # each bench space file: what its bench measures, which the file must keep
    "gpu_mfu": (lambda spec: spec.model.d_model >= 1024 and spec.train.precision == "bf16", "bf16 at d_model >= 1024"),
    "gpu_ladder": (
        lambda spec: spec.sizes() == ["proxy", "w1024"] and spec.at_size("w1024").model.d_model == 1024,
        "a rung at d_model 1024",
    ),
    "throughput": (lambda spec: spec.model == space.load("default").model, "the default space's model"),
}


@pytest.mark.parametrize("name", sorted(BENCH_SPACES))
def test_every_bench_space_validates_and_keeps_what_its_bench_measures(name):
    assert sorted(BENCH_SPACES) == sorted(p.stem for p in (ROOT / "bench").glob("*.toml")), "one entry per file"
    keeps, what = BENCH_SPACES[name]
    assert keeps(space.load(ROOT / "bench" / f"{name}.toml")), f"bench/{name}.toml must keep {what}"


@pytest.mark.slow
def test_the_gpu_check_runs_dry_on_a_cpu_and_writes_every_figure(tmp_path):
    """bench/gpu_check.sh must start on the first GPU a session gets: its dry run takes every step at toy size."""
    import json
    import os
    import subprocess

    env = {**os.environ, "OUT": str(tmp_path), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every step passed" in done.stdout
    figures = json.loads((tmp_path / "gpu_check.json").read_text())
    steps = ["pytest_gpu", "mfu", "search", "ladder_search", "ladder_promote"]
    assert figures["dry_run"] and figures["env"]["device"] == "cpu"
    assert all(figures[s]["rc"] == 0 and figures[s]["seconds"] > 0 for s in steps)
    assert "skipped" in figures["pytest_gpu"]["summary"], "without a GPU the gpu tests skip"
    assert 0 < figures["mfu"]["figures"]["mfu"] < 1 and figures["mfu"]["figures"]["device_kind"] == "cpu"
    assert len(figures["search"]["trials"]) == 2
    report = "\n".join(figures["ladder_promote"]["report"])
    assert (
        "plan: " in report and "rank correlation of expected val_loss" in report and "expected front at w64" in report
    )


def test_a_gpu_check_step_at_its_limit_is_stopped_by_sigterm_and_keeps_its_output():
    gpu_check = load("gpu_check")
    command = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(600)"]
    done = gpu_check.run(command, timeout=1)
    assert done["rc"] == "timeout after 1 s" and done["tail"].strip() == "started"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "bench" / "data").glob("*/spaces/*.toml")), ids=lambda p: f"{p.parent.parent.name}/{p.stem}"
)
def test_every_space_a_committed_sweep_trained_still_validates(path):
    """The spaces bench/lr_sweep.py wrote beside its records: what each cell trained, loadable as it was."""
    spec = space.load(path)
    assert spec.name == path.stem and spec.scale == []
