"""`moesearch train` end to end, on the CPU always and on a GPU when there is one."""

from __future__ import annotations

import pytest
from conftest import SPACES, run_cli, write_space

from moesearch.core import results


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


GPU = [pytest.mark.gpu, pytest.mark.skipif(not _has_gpu(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize(
    "device, precision, compiled, block",
    [
        ("cpu", None, False, "gpt2"),
        ("cpu", "bf16", False, "gpt2"),  # the precision path GPUs take by default, on two CPU ranks
        ("cpu", None, False, "llama"),  # RMSNorm and rotary positions
        pytest.param("cuda", None, False, "gpt2", marks=GPU),  # bf16 and the quantized evaluation on CUDA
        pytest.param("cuda", None, False, "llama", marks=GPU),
        pytest.param("cuda", None, True, "gpt2", marks=GPU),  # compile on CUDA (Triton); CPU sibling: test_model.py
    ],
)
@pytest.mark.slow
def test_train_one_assignment_prints_metrics_and_writes_its_record(tmp_path, device, precision, compiled, block):
    env = {"DS_ACCELERATOR": device}
    nproc = "2" if device == "cpu" else "1"
    keys = (f'precision = "{precision}"\n' if precision else "") + ("compile = true\n" if compiled else "")
    text = (SPACES / "tiny.toml").read_text().replace("[train]\n", f"[train]\n{keys}")
    text = text.replace("[model]\n", f'[model]\nblock = "{block}"\n') if block != "gpt2" else text
    space = "tiny" if text == (SPACES / "tiny.toml").read_text() else str(write_space(tmp_path, text))
    out = run_cli(
        "train",
        space,
        "--nproc",
        nproc,
        "--layers",
        "swiglu,relu2",
        "--results",
        str(tmp_path),
        "--no-progress",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert "val_loss:" in out.stdout and "tokens_per_s:" in out.stdout
    row = results.load_trials(tmp_path, "tiny").iloc[0]
    assert row["state"] == "COMPLETE" and row["assignment"] == "swiglu,relu2"
    assert (row["device_kind"] == "cpu") == (device == "cpu")
    assert row["world_size"] == int(nproc) and row["peak_memory_mb"] > 0
    assert row["precision"] == precision or (
        precision is None and row["precision"] == ("fp32" if device == "cpu" else "bf16")
    )
    steps = results.load_steps(tmp_path, "tiny")
    assert steps["grad_norm"].gt(0).all() and row["max_grad_norm"] == steps["grad_norm"].max()
    assert 0 <= row["clipped_share"] <= 1 and row["loss_spikes"] >= 0
    assert row["quant_gap_int8"] == row["val_loss_int8"] - row["val_loss"], "the quantized evaluation ran"
    assert ('"block":"llama"' in row["config_json"].replace(" ", "")) == (block == "llama")
