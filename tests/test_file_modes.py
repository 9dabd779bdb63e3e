"""Results are files like any other tool's: their mode is what the umask gives (shared clusters)."""

from __future__ import annotations

import os
import stat

import pytest
from click.testing import CliRunner
from test_results import FRONT, write

from moesearch.cli import cli


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_file_a_study_writes_gets_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write(tmp_path, *FRONT)  # the three Parquet tables
        for command in (["pareto", "--out", str(tmp_path / "front.csv")], ["plot"], ["report"]):
            out = CliRunner().invoke(cli, [*command, "--results", str(tmp_path)])
            assert out.exit_code == 0, out.output
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".parquet", ".csv", ".png", ".html"}
    assert {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {str(p): oct(mode) for p in files}
    folders = [p for p in tmp_path.rglob("*") if p.is_dir()]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(0o777 & ~umask)}
