"""The cluster launch templates in jobs/: valid bash, and every moesearch command in them accepted by the CLI.

Each moesearch command line of a template is expanded by bash itself, with the template's own
`: "${VAR:=default}"` lines and example values for what SLURM or the user sets, then run in this
process with --dry-run (search, worker, node) or parsed without running (any other command). No
SLURM, GPU or network is needed, and nothing is trained or written.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from moesearch.cli import cli

ROOT = Path(__file__).resolve().parent.parent
JOBS = ROOT / "jobs"
TEMPLATES = sorted(p for p in JOBS.iterdir() if p.is_file() and p.name != "README.md")

DRY_RUN_COMMANDS = {"search", "worker", "node"}  # they take --dry-run; other commands are only parsed
EXPECTED = {  # the subcommands a template must run (a template missing here needs at least one command)
    "slurm-single-node.sbatch": {"search"},
    "slurm-multi-node.sbatch": {"search", "worker", "node"},
    "slurm-array.sbatch": {"search", "worker", "status"},
    "slurm-preemptible.sbatch": {"search", "worker"},
    "deepspeed-hostfile.sh": {"search", "worker"},
    "torchrun.sh": {"search", "worker", "node"},
}

DEFAULT_LINE = re.compile(r'^\s*: "\$\{(\w+):[=?].*\}"\s*$')  # : "${VAR:=default}" or : "${VAR:?message}"
COMMAND_LINE = re.compile(r"^\s*(?:exec\s+)?(moesearch\s.*)$")
NOT_ARGUMENTS = re.compile(r"(?:\s+(?:\d*>>?&?\S+|&))+\s*$")  # trailing redirections and a final '&'


def examples(tmp_path: Path) -> dict[str, str]:
    """What SLURM, the user or the template itself (MASTER_ADDR) would set: example values."""
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two hosts, eight GPUs each\ngpu001 slots=8\ngpu002 slots=8\n")
    submit = tmp_path / "submit"
    submit.mkdir()
    return {
        "SLURM_JOB_ID": "123",
        "SLURM_NNODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_ARRAY_TASK_ID": "0",
        "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_JOB_NODELIST": "gpu[001-002]",
        "SLURM_SUBMIT_DIR": str(submit),
        "MASTER_ADDR": "gpu001",
        "NODE_RANK": "1",
        "HOSTFILE": str(hostfile),
    }


def logical_lines(text: str) -> list[str]:
    """The script's lines, backslash continuations joined."""
    lines, pending = [], ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
        else:
            lines.append(pending + line)
            pending = ""
    return [*lines, pending] if pending else lines


def commands(template: Path) -> list[str]:
    """Every moesearch command line (`moesearch ...` or `exec moesearch ...`), as written."""
    found = []
    for line in logical_lines(template.read_text()):
        if m := COMMAND_LINE.match(line):
            found.append(NOT_ARGUMENTS.sub("", m.group(1)))
    return found


def default_lines(template: Path) -> list[str]:
    return [line for line in template.read_text().splitlines() if DEFAULT_LINE.match(line)]


def header(template: Path) -> str:
    """The comment block the template starts with."""
    lines = []
    for line in template.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def expand(template: Path, command: str, env: dict[str, str], cwd: Path) -> list[str]:
    """The argument list bash makes of `command` after the template's defaults, with the example values."""
    program = "\n".join(["set -euo pipefail", *default_lines(template), f"printf '%s\\0' {command}"])
    done = subprocess.run(["bash", "-c", program], env=env, cwd=cwd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{template.name}: cannot expand {command!r}: {done.stderr.strip()}"
    return done.stdout.split("\0")[:-1]


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def test_templates_found():
    assert {t.name for t in TEMPLATES} >= set(EXPECTED)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_bash_syntax(template: Path):
    done = subprocess.run(["bash", "-n", str(template)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_header_documents_every_variable(template: Path):
    text = template.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert re.search(r"^set -euo pipefail$", text, re.M), "strict mode"
    names = [DEFAULT_LINE.match(line).group(1) for line in default_lines(template)]
    assert names, f"{template.name}: no ': \"${{VAR:=default}}\"' lines"
    missing = [name for name in names if not re.search(rf"^#\s+{name}\b", header(template), re.M)]
    assert not missing, f"{template.name}: the header does not document {missing}"


def _storage_file(args: list[str]) -> Path:
    url = args[args.index("--storage") + 1]
    assert url.startswith("journal:"), f"the templates' default storage is a journal file, not {url}"
    return Path(url.removeprefix("journal:"))


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_every_command_is_accepted(template: Path, tmp_path: Path, monkeypatch):
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C", **examples(tmp_path)}
    found = commands(template)
    assert found, f"{template.name}: no moesearch command line"
    monkeypatch.chdir(tmp_path)
    before = files_under(tmp_path)
    runner = CliRunner()
    subcommands = set()
    for command in found:
        argv = expand(template, command, env, tmp_path)
        assert argv[0] == "moesearch" and len(argv) > 1, argv
        name, args = argv[1], argv[2:]
        subcommands.add(name)
        assert name in cli.commands, f"{template.name}: `moesearch {name}` is not a command"
        if name in DRY_RUN_COMMANDS:
            if name == "worker":  # joins a study: its storage file exists (made by the template's `search`)
                _storage_file(args).parent.mkdir(parents=True, exist_ok=True)
                _storage_file(args).touch()
                before = files_under(tmp_path)
            result = runner.invoke(cli, [name, *args, "--dry-run"])
            assert result.exit_code == 0, f"{template.name}: {' '.join(argv)} --dry-run:\n{result.output}"
            assert re.search(r"^plan:", result.output, re.M), result.output
        else:  # parse the flags without running the command
            try:
                cli.commands[name].make_context(name, list(args))
            except click.UsageError as e:
                pytest.fail(f"{template.name}: {' '.join(argv)}: {e.format_message()}")
    assert subcommands >= EXPECTED.get(template.name, set()), f"{template.name} runs only {sorted(subcommands)}"
    assert files_under(tmp_path) == before, "a dry run wrote files"


def test_readme_lists_every_template():
    readme = (JOBS / "README.md").read_text()
    missing = [t.name for t in TEMPLATES if t.name not in readme]
    assert not missing, f"jobs/README.md does not mention {missing}"
