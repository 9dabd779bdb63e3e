"""The analysis notebook (notebooks/analysis.py, jupytext percent text, paired with analysis.ipynb):
executed top to bottom on a real tiny study."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from moesearch.analysis import effects, pareto, plots, verdict
from moesearch.core import results

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "analysis.py"
GUIDE = ROOT / "docs" / "guide" / "analysing.md"  # where the headless route is written
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


HEADLESS = re.compile(r"`(jupyter execute notebooks/analysis\.ipynb --output (\S+))`")


@pytest.fixture(scope="module")
def executed(tiny_study, tmp_path_factory):
    """The notebook as the documented headless command leaves it, run on the tiny study (chosen by environment)
    from a copy of the repository's notebooks folder: the executed file, outputs and all, read back."""
    command, output = HEADLESS.search(GUIDE.read_text()).groups()
    here = tmp_path_factory.mktemp("headless")
    shutil.copytree(NOTEBOOK.parent, here / "notebooks", ignore=shutil.ignore_patterns("*-run.ipynb"))
    jupyter = Path(sys.executable).parent / "jupyter"  # this environment's, activated or not
    env = {**os.environ, "MOESEARCH_RESULTS": str(tiny_study), "MOESEARCH_STUDY": "tiny"}
    run = subprocess.run([str(jupyter), *command.split()[1:]], cwd=here, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return nbformat.read(here / "notebooks" / f"{output}.ipynb", as_version=4)


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def cell_using(nb, name: str):
    """The code cell whose source calls `name` (each section has one code cell)."""
    (cell,) = [c for c in code_cells(nb) if name in c.source]
    return cell


def text_of(outputs) -> str:
    """Everything a reader sees as text: printed streams and the text forms of displayed objects."""
    parts = []
    for out in outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        parts += [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


@pytest.mark.slow
def test_every_code_cell_runs_without_an_error(executed):
    cells = code_cells(executed)
    assert len(cells) >= 6, "parameters and five sections"
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), "every cell ran, in order"
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]


@pytest.mark.slow
def test_the_notebook_opens_with_the_answer(executed, tiny_study):
    """The first section after the parameters prints the verdict and draws the effects, as pareto leads with it."""
    first = code_cells(executed)[1]
    assert "verdict.verdict" in first.source and "effects_figure" in first.source
    fit = effects.fit(results.load_trials(tiny_study, "tiny"))
    assert verdict.verdict(fit) in text_of(first.outputs)
    assert any("image/png" in o.get("data", {}) for o in first.outputs), "the effects picture"


@pytest.mark.slow
def test_the_front_section_shows_the_front_the_baselines_and_the_hypervolume(executed, tiny_study):
    analysis = pareto.analyse(results.load_trials(tiny_study, "tiny"))
    shown = text_of(cell_using(executed, "pareto.front_view").outputs)
    expected = set(analysis.table.loc[analysis.table["pareto"] | analysis.table["baseline"], "assignment"])
    assert {"gelu,gelu", "swiglu,swiglu", "relu2,relu2"} <= expected
    assert all(a in shown for a in expected), f"missing from the front table: {[a for a in expected if a not in shown]}"
    assert f"hypervolume {analysis.hypervolume:.6g}" in shown, "the same hypervolume as `moesearch pareto`"
    assert all(row.summary in shown for row in analysis.deltas.itertuples()), "every baseline delta is printed"


@pytest.mark.slow
def test_every_picture_is_displayed_as_a_png(executed):
    images = [
        o["data"]["image/png"]
        for c in code_cells(executed)
        for o in c.outputs
        if o.output_type == "display_data" and "image/png" in o.get("data", {})
    ]
    assert len(images) >= len(plots.NAMES_PNG), "front, hypervolume, layers, curves and hidden"
    assert all(base64.b64decode(png).startswith(PNG_MAGIC) for png in images)


@pytest.mark.slow
def test_the_layer_statistics_and_the_noise_check_are_shown(executed):
    inside = text_of(cell_using(executed, "hidden_near_zero_frac").outputs)
    assert "hidden_std" in inside and "relu2" in inside, "the pivot has a column per statistic and activation"
    noise_check = text_of(cell_using(executed, "noise.replicate_table").outputs)
    assert "stays on front" in noise_check, "the tiny study has verify replicates: the table, not the hint"
    assert "moesearch verify" not in noise_check


def test_the_notebook_is_canonical_jupytext_percent_text():
    """Opening and saving it with jupytext changes nothing below the header (whose version fields jupytext owns)."""
    stored = NOTEBOOK.read_text()
    nb = jupytext.read(NOTEBOOK)
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent" and nb.metadata["kernelspec"]["name"] == "python3"
    assert {c.cell_type for c in nb.cells} == {"markdown", "code"}
    assert below_header(jupytext.writes(nb, fmt="py:percent")) == below_header(stored)


def test_the_ipynb_is_the_py_paired_and_stripped():
    """notebooks/analysis.ipynb opens in plain Jupyter; jupytext keeps it and the .py as one notebook.
    After editing either: `jupytext --sync notebooks/analysis.py`."""
    paired, text = jupytext.read(NOTEBOOK.with_suffix(".ipynb")), jupytext.read(NOTEBOOK)
    assert [(c.cell_type, c.source) for c in paired.cells] == [(c.cell_type, c.source) for c in text.cells]
    assert paired.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    assert all(
        not c.get("outputs") and c.get("execution_count") is None for c in paired.cells if c.cell_type == "code"
    ), "outputs stripped: the file diffs as the code does"


def below_header(text: str) -> str:
    _, header, body = text.split("# ---\n", 2)
    assert "jupytext:" in header
    return body


@pytest.mark.parametrize("newest", ["a", "b"])
def test_without_moesearch_study_the_notebook_reads_the_most_recent_study_as_the_cli_does(
    tmp_path, monkeypatch, capsys, newest
):
    from click.testing import CliRunner
    from test_study_default import two_studies

    from moesearch.cli import cli

    two_studies(tmp_path, newest)
    monkeypatch.setenv("MOESEARCH_RESULTS", str(tmp_path))
    monkeypatch.delenv("MOESEARCH_STUDY", raising=False)
    parameters = code_cells(jupytext.read(NOTEBOOK))[0]
    assert "MOESEARCH_STUDY" in parameters.source
    namespace: dict = {}
    exec(parameters.source, namespace)  # the notebook's first cell, as a kernel would run it
    assert namespace["STUDY"] == newest and "the most recently written of 2 studies" in capsys.readouterr().out
    cli_reads = CliRunner().invoke(cli, ["pareto", "--results", str(tmp_path)]).output
    assert f"study {newest!r} in" in cli_reads


def test_the_notebook_extra_installs_what_opening_and_running_it_needs():
    import tomllib

    root = NOTEBOOK.parent.parent
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["notebook"]
    names = {req.split(">")[0].split("=")[0].split("[")[0].strip() for req in extra}
    assert {"notebook", "ipykernel", "nbclient", "jupytext"} <= names
    assert "pip install -e '.[notebook]'" in GUIDE.read_text()
    imported = {
        line.split()[1].split(".")[0]
        for line in NOTEBOOK.read_text().splitlines()
        if line.startswith(("import ", "from "))
    }
    from_ipykernel = {"IPython", "matplotlib_inline"}  # ipykernel depends on both
    assert imported - {"os", "pathlib", "pandas", "moesearch"} == from_ipykernel
