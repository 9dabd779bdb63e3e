"""The noise check, `verify`, `plot`, `report` and Optuna's own CLI, on synthetic records and a real tiny study."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest
from click.testing import CliRunner
from test_results import FRONT, record, write

from moesearch.analysis import answer, expected, noise, pareto, plots
from moesearch.cli import cli
from moesearch.core import results


def test_verify_plans_fresh_seeds_for_the_front_and_the_baselines(tmp_path):
    write(tmp_path, *FRONT, record(6, "gelu,swiglu", 1.9, 110.0, seed=2))  # one replicate already there
    todo = noise.plan(results.load_trials(tmp_path, "s"), n_seeds=2, first_seed=1)
    assert sorted(todo) == sorted(
        [
            ("gelu,gelu", 1),
            ("gelu,gelu", 2),
            ("swiglu,swiglu", 1),
            ("swiglu,swiglu", 2),
            ("relu,relu", 1),
            ("relu,relu", 2),  # a dominated baseline is verified too
            ("gelu,swiglu", 1),  # seed 2 is taken: one more makes three
        ]
    ), "the dominated hybrid swiglu,gelu is not verified"
    write(tmp_path, *(record(7 + i, a, 2.0, 100.0, seed=s) for i, (a, s) in enumerate(todo)))
    assert noise.plan(results.load_trials(tmp_path, "s"), n_seeds=2, first_seed=1) == [], "done: nothing again"


def test_verify_trains_a_preempted_seed_again(tmp_path):
    """A preempted replicate has no result: its seed is planned again, so every target shares seed 1."""
    write(tmp_path, *FRONT, record(6, "gelu,gelu", None, None, state="PREEMPTED", seed=1, origin="verify"))
    write(tmp_path, record(7, "swiglu,swiglu", None, None, state="FAIL", seed=1, origin="verify"))
    todo = dict(noise.plan(results.load_trials(tmp_path, "s"), n_seeds=1, first_seed=1))
    assert todo["gelu,gelu"] == 1 and todo["relu,relu"] == 1, "preempted: the same seed again"
    assert todo["swiglu,swiglu"] == 2, "failed: a fresh seed (it would fail again)"


def replicated(tmp_path, points: dict[str, list[tuple[float, float]]]) -> pd.DataFrame:
    """Records of each assignment at the given (val_loss, tokens_per_s), one seed each, and the replicate table."""
    n = 0
    for assignment, values in points.items():
        for seed, (loss, speed) in enumerate(values):
            write(tmp_path, record(n, assignment, loss, speed, seed=seed))
            n += 1
    return noise.replicate_table(results.load_trials(tmp_path, "s")).set_index("assignment")


def test_a_difference_inside_the_seed_spread_keeps_both_on_the_front(tmp_path):
    table = replicated(
        tmp_path,
        {
            "gelu,gelu": [(2.00, 100), (2.10, 100)],  # 2.05 ± 0.07
            "gelu,swiglu": [(1.98, 100), (2.06, 100)],  # 2.02 ± 0.06: better mean, within spread
            "relu,relu": [(2.50, 90), (2.52, 90)],
        },
    )  # worse beyond any spread
    assert table["robust"].to_dict() == {"gelu,gelu": True, "gelu,swiglu": True, "relu,relu": False}
    assert sorted(table.loc["relu,relu", "clearly_dominated_by"]) == ["gelu,gelu", "gelu,swiglu"]
    assert noise.verdict(table.reset_index()) == (
        "no hybrid clearly dominates every baseline (all-gelu, all-relu); "
        "gelu,swiglu clearly beats all-relu. Within the seed spread the "
        "front is: gelu,gelu; gelu,swiglu"
    )


def test_a_hybrid_beyond_the_spread_of_every_baseline_is_called_a_win(tmp_path):
    table = replicated(
        tmp_path,
        {
            "gelu,gelu": [(2.00, 100), (2.02, 100)],
            "swiglu,swiglu": [(1.95, 90), (1.97, 90)],
            "gelu,swiglu": [(1.90, 110), (1.91, 110)],
        },
    )
    assert table["robust"].to_dict() == {"gelu,gelu": False, "swiglu,swiglu": False, "gelu,swiglu": True}
    assert noise.verdict(table.reset_index()) == "yes: gelu,swiglu clearly dominates all-gelu, all-swiglu"


@pytest.mark.slow
def test_verify_adds_seed_replicates_that_link_to_the_search_and_do_not_count_as_budget(tiny_study):
    trials = results.load_trials(tiny_study, "tiny").set_index("trial")
    search, verify = trials[trials["origin"] == "search"], trials[trials["origin"] == "verify"]
    assert len(search) == 4 and len(verify) >= 3, "every baseline and front member got one fresh seed"
    assert set(verify["seed"]) == {1} and set(verify["assignment"]) <= set(search["assignment"])
    for number, row in verify.iterrows():
        first = search.index[search["assignment"] == row["assignment"]][0]
        assert row["replicate_of"] == first and number in trials.loc[first, "replicates"]
    again = CliRunner().invoke(
        cli, ["verify", "tiny", "--seeds", "1", "--nproc", "2", "--results", str(tiny_study), "--no-progress"]
    )
    assert again.exit_code == 0, again.output
    assert "| 0 replicate trials to train" in again.output and "stays on front" in again.output
    assert len(results.load_trials(tiny_study, "tiny")) == len(trials), "nothing trained twice"


def test_verify_needs_an_existing_study(tmp_path):
    out = CliRunner().invoke(cli, ["verify", "tiny", "--results", str(tmp_path), "--nproc", "2"])
    assert out.exit_code == 2 and "--study" in out.output and "run `moesearch search` first" in out.output


@pytest.mark.slow
def test_plot_writes_every_picture(tiny_study, tmp_path):
    out = CliRunner().invoke(cli, ["plot", "--results", str(tiny_study), "--out", str(tmp_path / "png")])
    assert out.exit_code == 0, out.output
    for name in plots.NAMES_PNG:
        pixels = matplotlib.image.imread(tmp_path / "png" / f"{name}.png")
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200 and pixels.std() > 0.05, f"{name}.png is blank"
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == sorted(f"{n}.png" for n in plots.NAMES_PNG)


@pytest.mark.slow
def test_the_layer_heatmap_shows_the_front_then_the_baselines(tiny_study):
    analysis = pareto.analyse(results.load_trials(tiny_study, "tiny"))
    rows = plots.shown(analysis)
    assert rows["pareto"].tolist() == sorted(rows["pareto"].tolist(), reverse=True)
    assert set(rows.loc[rows["baseline"], "assignment"]) == {"gelu,gelu", "swiglu,swiglu", "relu2,relu2"}
    labels = [t.get_text() for t in plots.layers(analysis).axes[0].get_yticklabels()]
    assert len(labels) == len(rows) and "all-gelu" in " ".join(labels)


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
_CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BROWSER, *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(
    not BROWSER and not os.environ.get("MOESEARCH_REQUIRE_BROWSER"),
    reason="Debian's chromium is not installed (.ci/run installs it and sets MOESEARCH_REQUIRE_BROWSER)",
)
@pytest.mark.slow
def test_report_is_one_file_that_renders_in_a_real_browser(tiny_study, tmp_path):
    assert BROWSER, "MOESEARCH_REQUIRE_BROWSER is set but chromium is not installed"
    page = tmp_path / "report.html"
    out = CliRunner().invoke(cli, ["report", "--results", str(tiny_study), "--out", str(page)])
    assert out.exit_code == 0, out.output
    source = page.read_text()
    assert 'src="http' not in source and "<link" not in source, "self-contained: nothing fetched"
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "p1").stdout
    assert "<h1>Study <code>tiny</code></h1>" in dom and "gelu,gelu" in dom
    assert dom.count('<figure><img alt="') == len(plots.NAMES_PNG)
    assert "js-plotly-plot" in dom, "plotly drew the interactive front in the page"
    analysis = pareto.analyse(results.load_trials(tiny_study, "tiny"))
    for assignment in analysis.table["assignment"]:
        assert f"<b>{assignment}" in dom or f"\\u003cb\\u003e{assignment}" in dom, f"no hover data for {assignment}"
    assert "stays on front" in dom, "the noise check from verify is in the report"
    shot = tmp_path / "shot.png"
    chromium("--window-size=1200,2400", f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "p2")
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1200) and pixels.std() > 0.05, "the page rendered to something"


@pytest.mark.slow
def test_optunas_own_cli_finds_every_trial(tiny_study):
    optuna_cli = shutil.which("optuna", path=str(Path(sys.executable).parent)) or shutil.which("optuna")
    storage = f"sqlite:///{tiny_study / 'moesearch.db'}"
    listed = subprocess.run(
        [optuna_cli, "trials", "--storage", storage, "--study-name", "tiny", "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    by_number = {t["number"]: t for t in json.loads(listed.stdout)}
    records = results.load_trials(tiny_study, "tiny")
    assert set(records["trial"]) <= set(by_number), "every Parquet record is an Optuna trial"
    for row in records.itertuples():
        assert by_number[row.trial]["user_attrs"]["assignment"] == row.assignment
    best = subprocess.run(
        [optuna_cli, "best-trials", "--storage", storage, "--study-name", "tiny", "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert {t["number"] for t in json.loads(best.stdout)} <= set(records["trial"])


@pytest.mark.parametrize("command", ["plot", "report"])
@pytest.mark.slow
def test_plot_and_report_import_neither_torch_nor_deepspeed(tiny_study, tmp_path, command):
    out = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "moesearch",
            command,
            "--results",
            str(tiny_study),
            "--out",
            str(tmp_path / ("png" if command == "plot" else "r.html")),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert "matplotlib" in imported and not imported & {"torch", "deepspeed"}


@pytest.mark.slow
def test_two_rank_trials_record_their_steps_and_layers(tiny_study):
    import optuna

    from moesearch.core import space

    spec = space.load("tiny")
    trials = results.load_trials(tiny_study, "tiny")
    steps, layer_rows = results.load_steps(tiny_study, "tiny"), results.load_layers(tiny_study, "tiny")
    assert (steps.groupby("trial").size() == spec.train.steps).all() and set(steps["trial"]) == set(trials["trial"])
    evaluated = steps.dropna(subset=["val_loss"]).groupby("trial")["step"].agg(list)
    assert all(s == [4, 8, 12] for s in evaluated)
    last = steps[steps["step"] == spec.train.steps].set_index("trial")["val_loss"]
    assert (last == trials.set_index("trial")["val_loss"]).all(), "the last step's val_loss is the trial's"
    # expert parallel over both ranks: every token is counted once per routed expert, on the rank that ran it
    assert (layer_rows.groupby("trial").size() == 2).all() and layer_rows["moe"].all()
    assert layer_rows["expert_load"].map(sum).round(6).eq(1).all()
    assert (
        layer_rows["hidden_std"].gt(0).all()
        and layer_rows[["hidden_mean", "hidden_near_zero_frac"]].notna().all().all()
    )
    squared = layer_rows[layer_rows["activation"] == "relu2"]["hidden_zero_frac"]
    assert (
        len(squared)
        and squared.gt(0.2).all()
        and layer_rows[layer_rows["activation"] == "gelu"]["hidden_zero_frac"].eq(0).all()
    )
    stored = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tiny_study / 'moesearch.db'}").user_attrs
    assert all(json.loads(r) == stored["reference_point"] for r in trials["reference_point"]), "fixed at creation"


def test_verify_targets_stay_put_when_a_replicate_lands_worse(tmp_path):
    write(tmp_path, *FRONT)
    before = noise.plan(results.load_trials(tmp_path, "s"), n_seeds=1, first_seed=1)
    write(tmp_path, record(6, "gelu,swiglu", 2.4, 110.0, seed=1, origin="verify"))  # far worse than its first seed
    after = noise.plan(results.load_trials(tmp_path, "s"), n_seeds=1, first_seed=1)
    assert ("gelu,swiglu", 1) in before and after == [p for p in before if p != ("gelu,swiglu", 1)]


def test_hypervolume_of_three_objectives(tmp_path):
    objectives = {"val_loss": "minimize", "tokens_per_s": "maximize", "params_active": "minimize"}
    table = pd.DataFrame({"val_loss": [2.0], "tokens_per_s": [100.0], "params_active": [10.0]})
    reference = {"val_loss": 3.0, "tokens_per_s": 0.0, "params_active": 20.0}
    assert pareto.hypervolume(table, objectives, reference) == pytest.approx(1.0 * 100 * 10)


def test_a_hypervolume_of_0_because_every_point_is_beyond_the_reference_is_warned_naming_it(tmp_path):
    """The records' reference point is val_loss 3, tokens_per_s 0: losses of 3.2 and 3.5 add no volume."""
    write(tmp_path / "beyond", record(0, "gelu,gelu", 3.5, 100.0), record(1, "gelu,swiglu", 3.2, 50.0))
    analysis = pareto.analyse(results.load_trials(tmp_path / "beyond", "s"))
    assert analysis.hypervolume == 0.0
    warnings = [line for line in pareto.summary_lines(analysis) if line.startswith("warning")]
    assert warnings == [
        "warning: hypervolume 0: no assignment is better than the reference point (val_loss = 3, "
        "tokens_per_s = 0) in every objective; every front point's val_loss is beyond it; the "
        "reference is fixed when a study is created (search.reference)"
    ]
    write(tmp_path / "inside", record(0, "gelu,gelu", 2.5, 100.0), record(1, "gelu,swiglu", 3.2, 50.0))
    analysis = pareto.analyse(results.load_trials(tmp_path / "inside", "s"))
    assert analysis.hypervolume > 0 and pareto.reference_warning(analysis) is None


@pytest.mark.slow
def test_status_and_pareto_show_the_same_front(tiny_study):
    """One definition of the front (seed means), whether read from the storage or from the records."""
    import optuna

    from moesearch.supervisor import status

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tiny_study / 'moesearch.db'}")
    on, _ = pareto.front(results.load_trials(tiny_study, "tiny"))
    analysis = pareto.analyse(results.load_trials(tiny_study, "tiny"))
    assert status.of(study).front == len(on) == int(analysis.table["pareto"].sum())


def seed_means_study():
    """A's first seed looks best, its mean is beaten by B: the front is B alone, as `pareto` says;
    Optuna's best_trials, trial by trial, holds A's first seed and B."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from moesearch.core.trial import StudyAttr, TrialAttr

    study = optuna.create_study(directions=["minimize", "minimize"])
    study.set_user_attr(
        StudyAttr.SPACE, {"search": {"objectives": {"val_loss": "minimize", "params_total": "minimize"}}}
    )
    study.set_user_attr(StudyAttr.REFERENCE_POINT, {"val_loss": 5.0, "params_total": 20.0})
    for layer, seed, values in [("gelu", 0, [1.0, 10]), ("gelu", 1, [3.0, 10]), ("swiglu", 0, [1.5, 9])]:
        study.add_trial(
            optuna.trial.create_trial(
                params={"layer_00": layer},
                distributions={"layer_00": CategoricalDistribution(["gelu", "swiglu"])},
                values=values,
                user_attrs={TrialAttr.ASSIGNMENT: layer, TrialAttr.SEED: seed, TrialAttr.TRAINED: True},
            )
        )
    return study


def test_status_counts_the_front_of_seed_means_not_of_first_trials():
    from moesearch.supervisor import status

    assert status.of(seed_means_study()).front == 1


def test_the_search_s_progress_bar_counts_the_front_as_pareto_does_not_as_optuna_does():
    from moesearch.supervisor import search

    study = seed_means_study()
    assert len(study.best_trials) == 2 and search._front_size(study) == 1


@pytest.mark.slow
def test_pareto_report_status_and_plot_say_what_the_study_resolved(tiny_study, tmp_path):
    """The verdict line first, the per-layer effects and the expected front beside the observed one."""
    shown = CliRunner().invoke(cli, ["pareto", "--results", str(tiny_study)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[1].startswith("verdict: ") and "per-layer effects on val_loss" in shown.output
    trials = results.load_trials(tiny_study, "tiny")
    analysis = pareto.analyse(trials)
    told = answer.answer(analysis, expected.expected_front(trials))
    assert ("the expected front: " if told else "expected front (") in shown.output, "the answer leads once testable"
    assert "observed front, against the model:" in shown.output
    page = tmp_path / "r.html"
    assert CliRunner().invoke(cli, ["report", "--results", str(tiny_study), "--out", str(page)]).exit_code == 0
    source = page.read_text()
    assert "What the study has resolved" in source and html.escape(lines[1]) in source
    assert ("P front" if told else "Expected front of a shrunk model") in source
    headings = [h.split("</h2>")[0] for h in source.split("<h2>")[1:]]
    assert headings[0] == "What the study has resolved", "the answer first"
    front = "<h2>Observed front (single trainings)" if told else "<h2>Pareto front"
    assert source.index(html.escape(lines[1])) < source.index('<img alt="effects"') < source.index(front)
    assert headings.index("The front, interactive") > headings.index("Pictures"), "the heavy plot last"
    status = CliRunner().invoke(cli, ["status", "--results", str(tiny_study)])
    assert status.exit_code == 0 and status.output.splitlines()[-1] == lines[1]
    figure = plots.front(analysis, expected.expected_front(trials)[0])
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "expected front (noise model, 95% intervals)" in labels
