"""Every front says how sure it is: the measured seed noise, or that there is none; ties are no wins."""

from __future__ import annotations

import math

import pytest
from click.testing import CliRunner
from scipy.stats import t as student_t
from test_results import FRONT, record, write

from moesearch.analysis import noise, pareto
from moesearch.cli import cli
from moesearch.core import results
from moesearch.core.metrics import fmt_pm
from moesearch.core.trial import VERIFY_SEEDS

# Both baselines with a second seed (val_loss 0.02 apart, tokens/s alike), and a one-seed hybrid between them.
REPLICATED = [
    record(0, "gelu,gelu", 2.0, 120.0),
    record(1, "swiglu,swiglu", 1.8, 100.0),
    record(2, "gelu,swiglu", 1.85, 110.0),
    record(3, "gelu,gelu", 2.02, 120.0, seed=1, origin="verify"),
    record(4, "swiglu,swiglu", 1.82, 100.0, seed=1, origin="verify"),
]


def analysis_of(folder, *records):
    write(folder, *records)
    return pareto.analyse(results.load_trials(folder, "s"))


def test_one_seed_fronts_say_so_and_how_many_trials_verify_would_train(tmp_path):
    analysis = analysis_of(tmp_path, *FRONT)
    planned = noise.plan(results.load_trials(tmp_path, "s"), VERIFY_SEEDS, first_seed=1)
    assert not analysis.spread.measured and math.isnan(analysis.spread.sd["val_loss"])
    line = pareto.noise_line(analysis)
    assert line.startswith("every figure in this table is one training (no assignment has two seeds)")
    assert f"`moesearch verify` would measure it directly with {len(planned)} replicate trials" in line
    assert len(planned) == 12
    assert "front against the baselines (one seed each):" in pareto.summary_lines(analysis)


def test_replicates_give_a_pooled_spread_and_differences_inside_it_are_no_wins(tmp_path):
    analysis = analysis_of(tmp_path, *REPLICATED)
    spread = analysis.spread
    sd = math.sqrt(0.02**2 / 2)  # each baseline: two seeds 0.02 apart
    assert spread.dof == 2 and spread.assignments == 2
    assert spread.sd["val_loss"] == pytest.approx(sd) and spread.sd["tokens_per_s"] == 0
    margin = student_t.ppf(0.975, 2) * sd * math.sqrt(1 / 1 + 1 / 2)
    deltas = analysis.deltas.set_index(["assignment", "baseline"])
    assert deltas.loc[("gelu,swiglu", "all-swiglu"), "val_loss_margin"] == pytest.approx(margin)
    assert deltas.loc[("gelu,swiglu", "all-swiglu"), "summary"] == (
        f"no clear difference in val_loss (0.040 higher; seed noise margin {margin:.3f}), "
        "10.0% higher tokens_per_s than all-swiglu"
    ), "0.04 < the margin: a tie; tokens/s has no noise here"
    assert deltas.loc[("gelu,swiglu", "all-gelu"), "summary"].startswith("0.160 lower val_loss"), "beyond it: a win"
    line = pareto.noise_line(analysis)
    assert (
        line.startswith(f"seed noise: val_loss sd {sd:.4g} nats/token, tokens_per_s sd 0 tokens/s")
        and "2 degrees of freedom" in line
    )


def test_search_and_pareto_print_the_noise_statement(tmp_path):
    write(tmp_path, *REPLICATED)
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path)])
    assert out.exit_code == 0 and "seed noise: val_loss sd" in out.output
    assert "gelu,swiglu: no clear difference in val_loss" in out.output


def test_records_of_another_text_are_kept_out_of_the_front_and_named(tmp_path):
    analysis = analysis_of(tmp_path, *FRONT, record(6, "relu,swiglu", 0.5, 500.0, data_sha256="cd"))
    assert "relu,swiglu" not in set(analysis.table["assignment"]), "another text's loss is another quantity"
    assert analysis.left_out.startswith("left out: 1 trial trained on another text (sha256 cd)")
    assert analysis.left_out in pareto.summary_lines(analysis)
    on, _ = pareto.front(results.load_trials(tmp_path, "s"))
    assert "relu,swiglu" not in set(on["assignment"]), "the large-study front keeps them apart too"


@pytest.mark.parametrize(
    "mean, sd, shown",
    [
        (2.034, 0.007927, "2.0340 ± 0.0079"),
        (4.682, 0.04302, "4.682 ± 0.043"),
        (23_717.0, 1_234.0, "23,700 ± 1,200"),
        (2.04, math.nan, "2.04"),
        (8_466_432, 0.0, "8,466,432"),
    ],
)
def test_a_value_with_its_spread_prints_in_one_form(mean, sd, shown):
    assert fmt_pm(mean, sd) == shown
