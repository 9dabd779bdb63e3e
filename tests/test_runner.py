"""One trial start to record (supervisor/runner.py), with a stand-in worker group: what it prints."""

from __future__ import annotations

from conftest import MICRO, write_space

from moesearch import space
from moesearch.launch import Launch
from moesearch.settings import Settings
from moesearch.supervisor import runner
from moesearch.supervisor.group import WorkerGroup
from moesearch.vocab import Done


class Replies(WorkerGroup):
    """Answers every trial with `reply` after `steps` steps: (step, train_loss, val_loss or None)."""

    def __init__(self, log_dir, reply, steps=()):
        super().__init__(Launch(1), log_dir)
        self.reply, self.steps = reply, steps

    def run(self, trial, config_json, timeout_s, on_step, on_rung=None):
        for step in self.steps:
            on_step(*step)
        return self.reply


def settings(tmp_path, progress=False) -> Settings:
    micro = space.load(write_space(tmp_path, MICRO))
    return Settings(space=micro, study="s", storage="unused", results=tmp_path, launch=Launch(1), seed=0, data=None,
                    data_sha256="ab", progress=progress)


def test_experts_left_unquantized_are_recorded_and_warned_about(tmp_path, capsys):
    metrics = {"val_loss": 2.0, "tokens_per_s": 10.0, "quant_gap_int8": 0.001, "quant_uncalibrated_experts": 3}
    outcome = runner.run_trial(settings(tmp_path), Replies(tmp_path, Done(metrics, [], [])), 7, ["gelu", "swiglu"],
                               origin="train", replicate_of=None, reference={})
    assert outcome.row["quant_uncalibrated_experts"] == 3
    err = capsys.readouterr().err
    assert "warning: trial 7: 3 expert(s) saw no calibration token" in err
    calibrated = runner.run_trial(settings(tmp_path), Replies(tmp_path, Done({**metrics, "quant_uncalibrated_experts": 0},
                                                                             [], [])),
                                  8, ["gelu", "swiglu"], origin="train", replicate_of=None, reference={})
    assert calibrated.row["quant_uncalibrated_experts"] == 0 and "warning" not in capsys.readouterr().err
