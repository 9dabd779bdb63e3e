"""`moesearch train` end to end, on the CPU always and on a GPU when there is one."""

from __future__ import annotations

import pytest
from conftest import run_cli

from moesearch import results


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not _has_gpu(), reason="needs a CUDA GPU")]),
])
def test_train_one_assignment_prints_metrics_and_writes_its_record(tmp_path, device):
    env = {"DS_ACCELERATOR": device}
    nproc = "2" if device == "cpu" else "1"
    out = run_cli("train", "tiny", "--nproc", nproc, "--layers", "swiglu,relu2", "--results", str(tmp_path),
                  "--no-progress", env=env)
    assert out.returncode == 0, out.stderr
    assert "val_loss:" in out.stdout and "tokens_per_s:" in out.stdout
    row = results.load_trials(tmp_path, "tiny").iloc[0]
    assert row["state"] == "COMPLETE" and row["assignment"] == "swiglu,relu2"
    assert (row["device_kind"] == "cpu") == (device == "cpu")
    assert row["world_size"] == int(nproc) and row["peak_memory_mb"] > 0
