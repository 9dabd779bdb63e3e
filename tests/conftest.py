"""Shared fixtures: a one-rank gloo group in this process, and the real CLI in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "search_spaces"


# Commands that start ranks (a worker group, or the coordinate check's one rank) unless --dry-run is given.
RANK_COMMANDS = frozenset({"search", "train", "worker", "verify", "promote", "node", "coords"})
SLOW_FIXTURES = frozenset({"one_rank", "tiny_study"})  # an in-process DeepSpeed engine; a study trained by the CLI
_marked = {"slow": True}  # whether the running test carries the slow marker (set by `_slow_tier`)


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true", help="Run every test, the slow tier too (as CI does).")


def pytest_configure(config):
    if config.getoption("--full"):
        config.option.markexpr = ""  # addopts deselect the slow tier; --full takes every test
    # the corpora the tests map (core/corpus.py) are cached for this run, not in the user's cache folder;
    # every rank and command the tests start inherits it
    os.environ.setdefault("MOESEARCH_CACHE", str(Path(tempfile.mkdtemp(prefix="moesearch-cache-"))))


@pytest.fixture(autouse=True)
def _slow_tier(request, monkeypatch):
    """A test that starts ranks must carry @pytest.mark.slow, so the fast tier (`python -m pytest`) never
    waits on a worker group: starting one unmarked fails the test at once, naming the marker. Every test
    but the gpu-marked ones chooses the CPU accelerator explicitly, so the suite passes on a GPU machine."""
    _marked["slow"] = request.node.get_closest_marker("slow") is not None
    if request.node.get_closest_marker("gpu") is None:  # every rank it starts, in-process or not, on the CPU
        monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # (a GPU machine would otherwise put two ranks on one GPU)
    if _marked["slow"]:
        return
    if used := SLOW_FIXTURES & set(request.fixturenames):
        pytest.fail(f"uses {', '.join(sorted(used))}: mark the test @pytest.mark.slow")
    from moesearch.supervisor import coords, group

    def refuse(*args, **kwargs):
        pytest.fail("starts ranks: mark the test @pytest.mark.slow")

    monkeypatch.setattr(group.WorkerGroup, "_start", refuse)
    monkeypatch.setattr(coords, "run", refuse)


@pytest.fixture(autouse=True)
def _gpu_lease_given_back():
    """A command run in this process leases GPUs for its group (supervisor/devices.py) until the process
    exits: give them back after each test, so a later test's own group can have them."""
    yield
    from moesearch.supervisor import devices

    devices.release()


def _require_slow(args: tuple[str, ...]) -> None:
    if args and args[0] in RANK_COMMANDS and "--dry-run" not in args and not _marked["slow"]:
        pytest.fail(f"`moesearch {args[0]}` starts ranks: mark the test @pytest.mark.slow")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def one_rank():
    """A real (world size 1) gloo process group in the test process, for in-process DeepSpeed engines."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    import deepspeed

    from moesearch.ranks.deepspeed_compat import skip_inference_comm_op

    skip_inference_comm_op()
    deepspeed.init_distributed(dist_backend="gloo")
    yield


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "moesearch", *args]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m moesearch ARGS` in a subprocess, as a user would run it; `.tag` finds its ranks."""
    _require_slow(args)
    tag = uuid.uuid4().hex
    done = subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {}), TAG_ENV: tag},
    )
    done.tag = tag
    return done


TAG_ENV = "MOESEARCH_TEST_TAG"


def leftover_ranks(tag: str) -> list[int]:
    """PIDs of ranks still alive from the command run with `tag` (there should be none)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "moesearch.ranks.serve" in " ".join(p.info["cmdline"] or []) and p.environ().get(TAG_ENV) == tag:
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def write_space(folder: Path, body: str, name: str = "space.toml") -> Path:
    path = folder / name
    path.write_text(body)
    return path


# A two-layer space of four assignments: small enough to exhaust in a test.
MICRO = """
name = "micro"
activations = ["gelu", "swiglu"]
[model]
n_layers = 2
d_model = 32
n_heads = 2
seq_len = 32
d_ff = 96
num_experts = 2
top_k = 1
[train]
steps = 6
warmup_steps = 1
micro_batch = 4
eval_sequences = 8
[search]
timeout_s = 300
"""


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory) -> Path:
    """A real study made by the CLI with two gloo ranks: a tiny search, then `verify` with one fresh seed.

    Returns the results folder (study 'tiny'). Shared by the analysis tests: plot, report, notebook, Optuna's CLI,
    optuna-dashboard; the search logs live to TensorBoard and CSV (the monitor tests read them).
    """
    folder = tmp_path_factory.mktemp("tiny-study")
    _marked["slow"] = True  # set up before the test's own fixtures run; only slow tests may ask for it (`_slow_tier`)
    for command in (
        ["search", "tiny", "--trials", "4", "--monitor", "tensorboard", "--monitor", "csv"],
        ["verify", "tiny", "--seeds", "1"],
    ):
        done = run_cli(*command, "--nproc", "2", "--results", str(folder), "--no-progress")
        assert done.returncode == 0, done.stderr
    return folder


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m moesearch ARGS` started in the background; `.tag` finds its ranks."""
    _require_slow(args)
    tag = uuid.uuid4().hex
    proc = subprocess.Popen(
        cli_command(*args),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), TAG_ENV: tag},
    )
    proc.tag = tag
    return proc


def wait_for_training(logs: Path, trial: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until the worker group's log says trial `trial` started, then one more second (it is mid-trial)."""
    import time

    deadline = time.monotonic() + timeout
    while not any(f"moesearch: trial {trial} " in p.read_text(errors="replace") for p in logs.glob("*.log")):
        assert time.monotonic() < deadline and proc.poll() is None, f"trial {trial} never started"
        time.sleep(0.2)
    time.sleep(1)


# MICRO with a scale ladder: twice the width, twice the steps
LADDER = (
    MICRO
    + """
[[scale]]
name = "w64"
d_model = 64
d_ff = 192
steps = 12
"""
)

# MICRO with trials long enough (about 5 s on 2 CPU cores) to be hit mid-trial by a fault, a second after it starts.
LONG_MICRO = MICRO.replace("steps = 6", "steps = 150").replace("warmup_steps = 1", "warmup_steps = 2")

BACKENDS = ("sqlite", "journal", "postgresql")
POSTGRES_ENV = "MOESEARCH_TEST_POSTGRES"


def storage_url(backend: str, folder: Path) -> str:
    """A study storage of each kind; PostgreSQL is the server `.ci/postgres` starts (CI fails without it)."""
    if backend == "sqlite":
        return f"sqlite:///{folder / 'study.db'}"
    if backend == "journal":
        return f"journal:{folder / 'study.log'}"
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        message = f"no PostgreSQL server: set {POSTGRES_ENV} to its URL (`bash .ci/postgres` starts one)"
        if os.environ.get("MOESEARCH_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def unique_study(prefix: str) -> str:
    """A study name no other test uses: PostgreSQL holds the studies of every test in one database."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def local_settings(spec, results: Path, study: str = "s", progress: bool = False):
    """A command's settings as the supervisor reads them, for tests that call it without a CLI: one rank,
    seed 0, no storage URL or data (the caller hands over the study and a stand-in group)."""
    from moesearch.core.launch import Launch
    from moesearch.supervisor.settings import Settings

    return Settings(
        space=spec,
        study=study,
        storage="unused",
        results=results,
        launch=Launch(1),
        seed=0,
        data=None,
        data_sha256="ab",
        progress=progress,
    )
