"""The documentation: the README and docs/ build as a site with no broken link, and every command and flag
they show still exists (a renamed flag fails here, not in a reader's terminal)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from moesearch.cli import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "jobs" / "README.md", *(ROOT / "docs").rglob("*.md")])
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE = re.compile(r"```(?:bash|sh)?\n(.*?)```|`([^`\n]+)`", re.S)


def test_the_site_builds_without_a_warning(tmp_path):
    """mkdocs --strict: a link between pages that breaks, an anchor that is gone, a page left out of the nav."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert (tmp_path / "site" / "guide" / "noise" / "index.html").is_file()


def slug(heading: str) -> str:
    """A heading's anchor as Python-Markdown's toc (mkdocs) and GitHub make it, for the headings used here."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    """What mkdocs cannot see: the README's and jobs' links, and links out of docs/ into the repository."""
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        found = (page.parent / path).resolve()
        if not found.exists():
            broken.append(target)
        elif anchor and found.suffix == ".md" and anchor not in anchors(found):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def shown_commands(page: Path) -> list[list[str]]:
    """Every `moesearch ...` command line in a page's code blocks and inline code, as words."""
    found = []
    for block, inline in CODE.findall(page.read_text()):
        for line in (block or inline).splitlines():
            for part in re.split(r"&&|\|\||;|\|", line.split(" #")[0]):
                words = part.split()
                if "moesearch" in words and words[0] in ("moesearch", "exec"):
                    found.append(words[words.index("moesearch") :])
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_and_flag_shown_exists(page):
    unknown = []
    for words in shown_commands(page):
        try:
            words = shlex.split(" ".join(words))
        except ValueError:
            continue  # a line broken across a code span: its words are checked where they are whole
        if len(words) < 2 or words[1].startswith("-"):
            continue  # `moesearch --help`, `moesearch` alone
        command = cli.commands.get(words[1])
        if command is None:
            unknown.append(words[1])
            continue
        while len(words) > 2 and hasattr(command, "commands") and words[2] in command.commands:
            command, words = command.commands[words[2]], [words[0], *words[2:]]
        flags = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
        unknown += [f"{words[1]} {w}" for w in words[2:] if w.startswith("--") and w.split("=")[0] not in flags]
    assert not unknown, f"{page.relative_to(ROOT)} shows commands or flags that do not exist: {unknown}"


def test_the_check_finds_commands_in_the_readme():
    assert sum(len(shown_commands(p)) for p in PAGES) > 40, "the parser reads the pages' commands"
