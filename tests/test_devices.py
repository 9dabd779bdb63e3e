"""Several worker groups on one GPU node: each leases its own GPUs, or is refused in one line
(supervisor/devices.py). The decision runs on any machine with stand-in GPU names; the GPU test leases real ones."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import SPACES
from test_train_command import GPU

from moesearch.cli import cli
from moesearch.core.errors import InputError
from moesearch.supervisor import devices, settings

NODE = ("GPU-aaaa", "GPU-bbbb", "GPU-cccc")  # three GPUs by UUID, as CUDA_VISIBLE_DEVICES names them


def test_groups_lease_disjoint_gpus_and_a_group_without_enough_is_refused(tmp_path):
    first = devices.lease(NODE, 2, tmp_path)
    second = devices.lease(NODE, 1, tmp_path)
    assert first.gpus == ("GPU-aaaa", "GPU-bbbb") and second.gpus == ("GPU-cccc",)
    with pytest.raises(InputError) as refused:
        devices.lease(NODE, 1, tmp_path)
    said = str(refused.value)
    assert "\n" not in said and said.startswith("--nproc 1: 3 of this node's 3 GPUs are held by other moesearch groups")
    assert "0 free; allowed: wait for one to end" in said
    first.release()
    assert devices.lease(NODE, 2, tmp_path).gpus == ("GPU-aaaa", "GPU-bbbb"), "given back, leased again"


def test_a_group_asking_more_gpus_than_the_node_has_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"^--nproc 4: this node has 3 GPUs; allowed: 3 or fewer$"):
        devices.lease(NODE, 4, tmp_path)


def test_a_killed_supervisor_leaves_no_gpu_held(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from moesearch.supervisor import devices; "
            f"held = devices.lease({list(NODE)!r}, 3, Path({str(tmp_path)!r})); "
            "print('held', flush=True); time.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(InputError, match=rf"pid {holder.pid}\)"):  # the refusal names who holds them
        devices.lease(NODE, 1, tmp_path)
    holder.kill()
    holder.wait()
    time.sleep(0.1)
    assert devices.lease(NODE, 3, tmp_path).gpus == NODE


@pytest.mark.parametrize("launcher, visible", [("torchrun", "GPU-aaaa,GPU-bbbb"), ("deepspeed", None)])
def test_the_launch_carries_its_lease_to_the_launcher(tmp_path, monkeypatch, launcher, visible):
    """torchrun's ranks see only the leased GPUs; the DeepSpeed launcher picks devices 0.. itself, so its
    group leases the whole node and sets nothing."""
    monkeypatch.setattr(settings, "_visible_gpus", lambda: NODE)
    monkeypatch.setattr(devices, "LOCK_DIR", tmp_path)
    launch = settings.resolve_launch(2, None, None, None, launcher, None)
    assert launch.visible().get("CUDA_VISIBLE_DEVICES") == visible
    left = devices.lease(NODE, 1, tmp_path) if launcher == "torchrun" else None
    assert left is None or left.gpus == ("GPU-cccc",)
    if launcher == "deepspeed":
        with pytest.raises(InputError):
            devices.lease(NODE, 1, tmp_path)


def test_without_nproc_a_group_takes_one_rank_per_gpu_and_without_gpus_two_cpu_ranks(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(settings, "_visible_gpus", lambda: NODE)
    assert settings.resolve_launch(None, None, None, None, "torchrun", None).nproc == 3
    devices.release()
    monkeypatch.setattr(settings, "_visible_gpus", lambda: ())
    launch = settings.resolve_launch(None, None, None, None, "torchrun", None)
    assert launch.nproc == 2 and launch.gpus == () and launch.visible() == {}


def test_a_second_search_on_a_busy_node_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "_visible_gpus", lambda: NODE)
    monkeypatch.setattr(devices, "LOCK_DIR", tmp_path / "locks")
    other = devices.lease(NODE, 3, tmp_path / "locks")  # another group holds the node  # noqa: F841
    args = ["search", str(SPACES / "tiny.toml"), "--nproc", "1", "--results", str(tmp_path / "r"), "--dry-run"]
    shown = CliRunner().invoke(cli, args)
    assert shown.exit_code == 2 and "--nproc 1: 3 of this node's 3 GPUs are held" in shown.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("_", [pytest.param(None, marks=GPU)])
def test_real_gpus_are_leased_by_uuid_and_the_ranks_see_only_theirs(tmp_path, _):
    gpus = settings._visible_gpus()
    assert gpus and all(g.startswith("GPU-") for g in gpus)
    mine = devices.lease(gpus, 1, tmp_path)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(mine.gpus)}
    seen = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert seen.stdout.strip() == "1", seen.stderr
    if len(gpus) == 1:
        with pytest.raises(InputError):
            devices.lease(gpus, 1, tmp_path)


def test_a_lock_that_cannot_be_opened_refuses_the_group_in_one_line(tmp_path):
    (tmp_path / "GPU-aaaa.lock").mkdir()  # not a file: opening it fails as another user's unreadable one would
    with pytest.raises(InputError, match=r"^--nproc: cannot open the GPU lock .*GPU-aaaa.lock.*MOESEARCH_LOCK_DIR"):
        devices.lease(NODE, 1, tmp_path)


def test_the_deepspeed_launcher_is_refused_where_cuda_visible_devices_would_be_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "_visible_gpus", lambda: NODE)
    monkeypatch.setattr(devices, "LOCK_DIR", tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(InputError, match=r"^--launcher deepspeed: CUDA_VISIBLE_DEVICES is set \(2,3\)"):
        settings.resolve_launch(2, None, None, None, "deepspeed", None)
    assert settings.resolve_launch(2, None, None, None, "torchrun", None).gpus == NODE[:2]


def test_a_launcher_gets_sigterm_when_its_supervisor_is_killed_outright(tmp_path):
    """PR_SET_PDEATHSIG: a supervisor killed by SIGKILL (its lease gone with it) still stops its ranks."""
    noted = tmp_path / "sigterm"
    launcher = (
        "import pathlib, signal, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path({str(noted)!r}).write_text('got'), exit(0)))\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    supervisor = (
        "import subprocess, sys, time\n"
        "from moesearch.supervisor import group\n"
        f"child = subprocess.Popen([sys.executable, '-c', {launcher!r}], preexec_fn=group._die_with_parent, "
        "start_new_session=True, stdout=subprocess.PIPE, text=True)\n"
        "print(child.stdout.readline().strip(), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", supervisor], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "up"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    # the handler's write_text creates the file before it writes: wait for the word, not the file (a loaded
    # CI machine once read it between the two)
    while not (noted.exists() and noted.read_text() == "got") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert noted.read_text() == "got"


@pytest.mark.parametrize(
    "name, expected",
    [
        ("NVIDIA H100 80GB HBM3", "GPU-1234"),
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "MIG-1234"),  # CUDA_VISIBLE_DEVICES names a MIG instance MIG-<uuid>
    ],
)
def test_a_device_is_named_as_cuda_visible_devices_takes_it(name, expected):
    from types import SimpleNamespace

    from moesearch.supervisor.settings import _uuid

    assert _uuid(SimpleNamespace(name=name, uuid="1234"), 0) == expected
    assert _uuid(SimpleNamespace(name=name), 3) == "3", "no uuid reported: the index"
