"""The GPU check in one go: every figure a first GPU run owes the project, written to one JSON file.

    bash bench/gpu_check.sh            # on a GPU machine: installs the carried wheels, then runs this
    python bench/gpu_check.py --dry-run --out F.json   # on a CPU: the same steps at toy size (tested)

Steps, each timed, each written to --out as it ends (a run stopped at its limit keeps what it did):
1. env: torch, CUDA, the device, the versions of deepspeed and optuna;
2. pytest_gpu: `pytest -m gpu` over the test files that hold gpu tests (the CUDA training path; skipped on
   a CPU);
3. mfu: bench/mfu.py on bench/gpu_mfu.toml (d_model 1024, bf16, one rank);
4. search: a two-trial search of the default space on one GPU;
5. ladder: bench/gpu_ladder.toml searched at d_model 256, then one rung promoted to d_model 1024, with its
   rank correlation and effect transfer.
The dry run swaps in toy spaces and two gloo ranks, so it checks that every step starts and reports.
--budget (540 s: a device command gets 600) bounds them all; a step at its limit gets SIGTERM, which a
moesearch command takes as a preemption (its trial recorded as such), and a step with no time left is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LADDER_RUNG = '\n[[scale]]\nname = "w64"\nd_model = 64\nd_ff = 192\n'  # the dry run's: twice tiny's width


GRACE_S = 30  # after SIGTERM at a step's time limit: moesearch records the trial as preempted and exits


def run(command: list[str], timeout: float) -> dict:
    """Run a command in its own process group; its exit code, seconds and output's tail. At `timeout` it gets
    SIGTERM (a moesearch command stops at a step boundary and keeps its records), then SIGKILL after GRACE_S."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        code = f"timeout after {timeout:.0f} s"
    return {
        "command": " ".join(command),
        "rc": code,
        "seconds": round(time.perf_counter() - start, 1),
        "tail": out[-3000:],
    }


def env() -> dict:
    """The versions and the device; an import that fails (a wheel missing) is the figure."""
    try:
        import deepspeed
        import optuna
        import torch
    except ImportError as e:
        return {"error": f"{type(e).__name__}: {e}"}
    cuda = torch.cuda.is_available()
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "gpus": torch.cuda.device_count(),
        "deepspeed": deepspeed.__version__,
        "optuna": optuna.__version__,
    }


def moesearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "moesearch", *args, "--no-progress"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file of figures")
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on a CPU with two gloo ranks")
    parser.add_argument(
        "--budget", type=float, default=540, help="seconds for every step together (a device command gets 600)"
    )
    args = parser.parse_args()
    deadline = time.monotonic() + args.budget
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    ranks = ["--nproc", "2" if args.dry_run else "1"]
    if args.dry_run:
        mfu_space, layers, ladder, search_space = (
            ROOT / "search_spaces" / "tiny.toml",
            "gelu,swiglu",
            work / "toy.toml",
            "tiny",
        )
        tiny = (ROOT / "search_spaces" / "tiny.toml").read_text()
        ladder.write_text(tiny.replace('"gelu", "swiglu", "relu2"', '"gelu", "swiglu"') + LADDER_RUNG)  # 4 assignments
    else:
        mfu_space, layers, ladder, search_space = (
            HERE / "gpu_mfu.toml",
            "gelu,swiglu,gelu,swiglu",
            HERE / "gpu_ladder.toml",
            "default",
        )
    figures: dict = {"dry_run": args.dry_run, "env": env()}
    if "error" in figures["env"]:  # nothing below would start: the wheels did not install
        args.out.write_text(json.dumps(figures, indent=1))
        sys.exit(f"env: {figures['env']['error']}; figures in {args.out}")

    def step(name: str, command: list[str], timeout: float) -> dict:
        left = deadline - time.monotonic()
        if left < GRACE_S:  # what is left would not start it: say so rather than cut the step short
            figures[name] = {"command": " ".join(command), "rc": "skipped: --budget spent", "seconds": 0, "tail": ""}
        else:
            figures[name] = run(command, min(timeout, left - GRACE_S))
        args.out.write_text(json.dumps(figures, indent=1))
        print(f"{name}: rc {figures[name]['rc']} in {figures[name]['seconds']} s", flush=True)
        return figures[name]

    # only the files that hold gpu tests: the others import test-only packages the GPU machine lacks
    marked = sorted(str(f.relative_to(ROOT)) for f in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in f.read_text())
    pytest = step(
        "pytest_gpu", [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *marked], 240
    )
    pytest["summary"] = pytest["tail"].strip().splitlines()[-1] if pytest["tail"].strip() else ""
    mfu_json = work / "mfu.json"
    mfu = step(
        "mfu",
        [
            sys.executable,
            str(HERE / "mfu.py"),
            "--space",
            str(mfu_space),
            "--layers",
            layers,
            *ranks,
            "--json",
            str(mfu_json),
        ],
        240,
    )
    if mfu_json.exists():
        mfu["figures"] = json.loads(mfu_json.read_text())
    search = step(
        "search", moesearch("search", search_space, "--trials", "2", *ranks, "--results", str(work / "s")), 240
    )
    search["trials"] = re.findall(r"trial \d+ \[[^\]]+\] val_loss=[^\n]+", search["tail"])
    results = ["--results", str(work / "ladder")]
    step("ladder_search", moesearch("search", str(ladder), *ranks, *results), 300)
    rung = step("ladder_promote", moesearch("promote", str(ladder), "--max-seeds", "2", *ranks, *results), 300)
    rung["report"] = [
        line
        for line in rung["tail"].splitlines()
        if line.startswith(("plan:", "rank correlation", "no effect", "  ", "expected front"))
    ]
    args.out.write_text(json.dumps(figures, indent=1))
    failed = [k for k, v in figures.items() if isinstance(v, dict) and "rc" in v and v["rc"] != 0]
    print(f"figures in {args.out}; " + (f"failed: {', '.join(failed)}" if failed else "every step passed"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
