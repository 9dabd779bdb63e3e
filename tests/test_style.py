"""Format and lint as the ecosystem does: ruff's formatter and its rule set (pyproject.toml) over the tree,
so `.ci/run` checks them with the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

RUFF = Path(sys.executable).parent / "ruff"  # installed with the test extras


def ruff(*args: str, where: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(RUFF), *args, "--no-cache", "."], cwd=where, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [("check",), ("format", "--check")], ids=" ".join)
def test_the_tree_is_formatted_and_lint_free(command):
    out = ruff(*command)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_line_over_the_configured_length_fails_the_check(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "wide.py").write_text(f'WIDE = "{"word " * 30}"\n')  # one long word would be let through
    out = ruff("check", "--output-format", "concise", where=tmp_path)
    assert out.returncode == 1 and "wide.py:1:121: E501" in out.stdout


def test_ci_runs_exactly_the_readme_s_test_command():
    """The README's test command (the full tier) is what `.ci/run` runs, word for word."""
    readme = (ROOT / "README.md").read_text()
    command = "pip install torch==2.13.0 -e '.[test]' && python -m pytest --full"
    assert f"```bash\n{command}\n```" in readme
    assert (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == command


def test_a_test_that_is_not_a_gpu_one_runs_its_ranks_on_the_cpu():
    """conftest chooses the accelerator for every test: on a one-GPU machine, two ranks of a CPU test would
    otherwise both take the GPU (the GPU check runs the multi-rank tests there too)."""
    assert os.environ["DS_ACCELERATOR"] == "cpu"
