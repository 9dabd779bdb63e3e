"""The package's sides stay apart: import contracts (import-linter) run here, and they bite."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).parent / "lint-imports"  # installed with the test extras
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def lint(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(where), "PATH": str(LINT.parent)},
    )


def test_every_contract_is_kept():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in out.stdout


def test_torch_imported_by_an_analysis_module_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "moesearch", tmp_path / "moesearch", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    pareto = tmp_path / "moesearch" / "analysis" / "pareto.py"
    pareto.write_text(pareto.read_text().replace("import moocore\n", "import moocore\nimport torch\n", 1))
    out = lint(tmp_path)
    assert out.returncode != 0
    assert "Only the ranks import torch and deepspeed BROKEN" in out.stdout
    assert "moesearch.analysis.pareto -> torch" in out.stdout


def test_every_module_is_under_a_contract():
    """A module at the package's top would escape every contract: the sides and the core are folders."""
    loose = sorted(p.name for p in (ROOT / "moesearch").glob("*.py") if p.stem not in ("__init__", "__main__"))
    sides = {p.name for p in (ROOT / "moesearch").iterdir() if (p / "__init__.py").exists()}
    assert loose == []
    assert sides == {"core", "ranks", "supervisor", "analysis", "replay", "cli"}
    named = {m.split(".")[1] for c in CONTRACTS for m in c["source_modules"]}
    assert named == sides
