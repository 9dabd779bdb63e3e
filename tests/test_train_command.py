"""`moesearch train` end to end, on the CPU always and on a GPU when there is one."""

from __future__ import annotations

import pytest
from conftest import SPACES, run_cli, write_space

from moesearch import results


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("device, precision", [
    ("cpu", None),
    ("cpu", "bf16"),  # the precision path GPUs take by default, on two CPU ranks
    pytest.param("cuda", None, marks=[pytest.mark.gpu, pytest.mark.skipif(not _has_gpu(), reason="needs a CUDA GPU")]),
])
def test_train_one_assignment_prints_metrics_and_writes_its_record(tmp_path, device, precision):
    env = {"DS_ACCELERATOR": device}
    nproc = "2" if device == "cpu" else "1"
    space = "tiny" if precision is None else str(write_space(
        tmp_path, (SPACES / "tiny.toml").read_text().replace("[train]\n", f'[train]\nprecision = "{precision}"\n')))
    out = run_cli("train", space, "--nproc", nproc, "--layers", "swiglu,relu2", "--results", str(tmp_path),
                  "--no-progress", env=env)
    assert out.returncode == 0, out.stderr
    assert "val_loss:" in out.stdout and "tokens_per_s:" in out.stdout
    row = results.load_trials(tmp_path, "tiny").iloc[0]
    assert row["state"] == "COMPLETE" and row["assignment"] == "swiglu,relu2"
    assert (row["device_kind"] == "cpu") == (device == "cpu")
    assert row["world_size"] == int(nproc) and row["peak_memory_mb"] > 0
    assert row["precision"] == precision or (precision is None and row["precision"] == ("fp32" if device == "cpu"
                                                                                          else "bf16"))
    steps = results.load_steps(tmp_path, "tiny")
    assert steps["grad_norm"].gt(0).all() and row["max_grad_norm"] == steps["grad_norm"].max()
    assert 0 <= row["clipped_share"] <= 1 and row["loss_spikes"] >= 0
