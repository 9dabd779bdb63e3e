"""Training stability from a trial's steps: gradient-norm peak, clipped share, loss spikes."""

from __future__ import annotations

import pytest

from moesearch.supervisor.stability import SPIKE_WINDOW, spikes, stability


def rows(losses, norms=None):
    return [{"train_loss": loss, "grad_norm": None if norms is None else norms[i]} for i, loss in enumerate(losses)]


def test_a_smooth_curve_has_no_spikes_and_a_jump_is_one():
    smooth = [3.0 - 0.01 * i + 0.02 * (-1) ** i for i in range(60)]
    assert spikes(smooth) == 0
    jumped = smooth[:40] + [smooth[40] + 1.0] + smooth[41:]
    assert spikes(jumped) == 1
    assert spikes(smooth[:SPIKE_WINDOW]) == 0, "the first window has no history to jump from"


def test_a_tiny_jump_on_a_flat_curve_is_noise_not_a_spike():
    flat = [2.0] * 30 + [2.05] + [2.0] * 5  # MAD 0: only the 0.1-nat floor decides
    assert spikes(flat) == 0 and spikes([2.0] * 30 + [2.2]) == 1


def test_norms_give_the_peak_and_the_share_clipped():
    got = stability(rows([3.0] * 4, norms=[0.5, 2.0, 1.5, 0.9]), grad_clip=1.0)
    assert got == {"max_grad_norm": 2.0, "clipped_share": pytest.approx(0.5), "loss_spikes": 0}


def test_without_norms_or_steps_the_figures_are_unknown_not_zero():
    assert stability(rows([3.0, 2.9]), grad_clip=1.0) == {
        "max_grad_norm": None,
        "clipped_share": None,
        "loss_spikes": 0,
    }
    assert stability([], grad_clip=1.0) == {"max_grad_norm": None, "clipped_share": None, "loss_spikes": None}
