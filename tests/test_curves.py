"""Does a short run predict a long one? Rank correlations of early and final val_loss on known tables."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import kendalltau, spearmanr
from test_results import record, write

from moesearch.analysis import curves
from moesearch.cli import cli
from moesearch.core import results

FINAL = [2.0, 2.1, 2.2, 2.3, 2.4]  # five assignments, best first
AT_10 = [3.0, 3.1, 3.2, 3.3, 3.4]  # the same order: a perfect predictor
AT_20 = [2.9, 2.5, 2.8, 2.6, 2.7]  # shuffled: a poor one
NAMES = ["gelu,gelu", "gelu,swiglu", "swiglu,gelu", "swiglu,swiglu", "relu,relu"]


def curve_records():
    out = []
    for i, name in enumerate(NAMES):
        rec = record(i, name, FINAL[i], 100.0)
        rec.steps[:] = [
            {
                "step": s,
                "tokens": 64 * s,
                "train_loss": 3.0,
                "aux_loss": 2.0,
                "lr": 1e-3,
                "step_time_s": 0.1,
                "val_loss": v,
            }
            for s, v in ((10, AT_10[i]), (20, AT_20[i]), (30, FINAL[i]))
        ]
        out.append(rec)
    return out


def test_the_correlation_of_each_rung_with_the_last_step(tmp_path):
    write(tmp_path, *curve_records(), record(5, "relu,gelu", None, None, state="FAIL"))
    table = curves.rung_correlation(results.load_trials(tmp_path, "s"), results.load_evals(tmp_path, "s"))
    assert table["step"].tolist() == [10, 20] and table["assignments"].tolist() == [5, 5], "failed trials left out"
    assert table.loc[0, "spearman"] == pytest.approx(1.0) and table.loc[0, "kendall"] == pytest.approx(1.0)
    assert table.loc[1, "spearman"] == pytest.approx(spearmanr(AT_20, FINAL).statistic)
    assert table.loc[1, "kendall"] == pytest.approx(kendalltau(AT_20, FINAL).statistic)
    lines = curves.text(table)
    assert "step 10: Spearman 1.00, Kendall 1.00 over 5 assignments" in lines[0]
    assert lines[1].startswith("warning: at step 20 the early ranking predicts the final one weakly")
    assert lines[2] == (
        "warning: at step 10, 20 the correlation rests on 5, 5 assignments, fewer than 10: too few to "
        "say how well a short run predicts, either way"
    ), "even a perfect 1.00 of five may be chance"


def test_a_correlation_over_enough_assignments_gets_no_warning_for_its_count():
    table = pd.DataFrame({"step": [10, 20], "assignments": [12, 9], "spearman": [0.9, 0.8], "kendall": [0.8, 0.7]})
    lines = curves.text(table)
    assert len(lines) == 2 and lines[1].startswith("warning: at step 20 the correlation rests on 9 assignments")
    assert "step 10: Spearman 0.90, Kendall 0.80 over 12 assignments" in lines[0]
    assert len(curves.text(table.assign(assignments=[10, 40]))) == 1, "10 or more: no warning"


def test_without_a_pruned_trial_a_weak_correlation_is_a_note_on_pruning_not_a_warning():
    table = pd.DataFrame({"step": [10], "assignments": [12], "spearman": [0.2], "kendall": [0.1]})
    (_, said) = curves.text(table, pruned=False)
    assert said.startswith(
        "note (no trial was stopped early; this is whether search.pruning would be safe): at step 10"
    )
    assert curves.text(table)[1].startswith("warning: at step 10")


def test_pareto_prints_the_rung_correlation_and_a_study_without_curves_prints_none(tmp_path):
    write(tmp_path / "a", *curve_records())
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path / "a")])
    assert out.exit_code == 0 and "does a short run predict the final ranking?" in out.output
    write(tmp_path / "b", *(record(i, n, FINAL[i], 100.0) for i, n in enumerate(NAMES)))  # val_loss at the end only
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path / "b")])
    assert out.exit_code == 0 and "short run" not in out.output


def test_learning_curves_load_as_three_columns_of_the_evaluated_steps(tmp_path):
    write(tmp_path, *curve_records())
    evals = results.load_evals(tmp_path, "s")
    assert list(evals.columns) == ["trial", "step", "val_loss"] and len(evals) == 15
