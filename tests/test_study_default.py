"""A second study in the results folder (or the storage) does not stop flagless `pareto`, `plot`,
`report` or `status`: they read the most recently written one and say so on stderr; `compact`, which
rewrites files, still asks."""

from __future__ import annotations

import os

import optuna
import pytest
from click.testing import CliRunner
from test_results import record, write

from moesearch.cli import cli
from moesearch.core import results, space
from moesearch.core.trial import StudyAttr
from moesearch.supervisor import storage as storage_mod
from moesearch.supervisor import studies


def two_studies(folder, newest: str):
    """Studies 'a' (gelu,gelu) and 'b' (relu,relu) with records; `newest` written last."""
    write(folder, record(0, "gelu,gelu", 2.0, 100.0, study="a"), record(1, "gelu,swiglu", 2.1, 90.0, study="a"))
    write(folder, record(0, "relu,relu", 2.0, 100.0, study="b"), record(1, "relu,swiglu", 2.1, 90.0, study="b"))
    for name, at in (("a", 1_000_000), ("b", 1_000_000)):
        os.utime(results.trials_dir(folder, name), (at, at))
    os.utime(results.trials_dir(folder, newest), (2_000_000, 2_000_000))


@pytest.mark.parametrize("newest, other", [("a", "b"), ("b", "a")])
def test_flagless_pareto_reads_the_most_recently_written_study_and_says_which(tmp_path, newest, other):
    two_studies(tmp_path, newest)
    out = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert out.stderr == (
        f"moesearch: reading study {newest!r}, the most recently written of 2 in {str(tmp_path)!r} "
        f"(others: {other}; choose with --study)\n"
    )
    shown = {"a": "gelu,gelu", "b": "relu,relu"}
    assert shown[newest] in out.stdout and shown[other] not in out.stdout
    named = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path), "--study", other])
    assert named.exit_code == 0 and named.stderr == "" and shown[other] in named.stdout


def test_flagless_plot_and_report_read_it_too_and_compact_still_asks(tmp_path):
    two_studies(tmp_path, "a")
    plotted = CliRunner().invoke(cli, ["plot", "--results", str(tmp_path), "--out", str(tmp_path / "png")])
    assert plotted.exit_code == 0, plotted.output
    assert "reading study 'a'" in plotted.stderr and any((tmp_path / "png").glob("*.png"))
    reported = CliRunner().invoke(cli, ["report", "--results", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert reported.exit_code == 0 and "reading study 'a'" in reported.stderr, reported.output
    compacted = CliRunner().invoke(cli, ["compact", "--results", str(tmp_path)])
    assert compacted.exit_code == 2 and "--study: 2 studies have records" in compacted.output


def test_flagless_status_reads_the_study_with_the_latest_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'moesearch.db'}"
    storage = storage_mod.open_storage(url)
    for name in ("late", "early"):  # created in this order; 'late' gets the later trial
        study = studies.open_study(storage, name, space.load("tiny"), seed=0)
        study.set_user_attr(StudyAttr.TRIALS, 4)
    optuna.load_study(study_name="early", storage=storage).add_trial(optuna.trial.create_trial(values=[2.0, 100.0]))
    optuna.load_study(study_name="late", storage=storage).add_trial(optuna.trial.create_trial(values=[2.0, 100.0]))
    out = CliRunner().invoke(cli, ["status", "--storage", url])
    assert out.exit_code == 0, out.output
    assert "reading study 'late', the most recently written of 2" in out.stderr and "(others: early;" in out.stderr
    assert "late" in out.stdout.splitlines()[0]
