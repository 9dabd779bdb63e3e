"""What the pictures show a person: the front as a staircase, its members named, units on every axis."""

from __future__ import annotations

import matplotlib.ticker
from test_results import FRONT, record, write

from moesearch.analysis import pareto, plots
from moesearch.core import results


def analysis_of(folder, *records):
    write(folder, *records)
    return pareto.analyse(results.load_trials(folder, "s"))


def test_a_two_objective_front_is_drawn_as_its_staircase_with_its_best_and_knee_named(tmp_path):
    ax = plots.front(analysis_of(tmp_path, *FRONT)).axes[0]
    stairs = [line for line in ax.get_lines() if line.get_drawstyle().startswith("steps")]
    assert len(stairs) == 1 and stairs[0].get_drawstyle() == "steps-pre", "tokens/s is maximised: step before"
    assert sorted(stairs[0].get_xdata()) == [100.0, 110.0, 120.0]
    notes = {a.get_text() for a in ax.texts}
    assert {"all-swiglu (best val_loss)", "gelu,swiglu (knee)", "all-gelu", "all-relu"} <= notes
    assert isinstance(ax.xaxis.get_major_formatter(), matplotlib.ticker.EngFormatter), "8.5M, not a 1e7 offset"
    assert ax.get_xlabel() == "tokens_per_s [tokens/s] (max)"


def test_a_minimised_cost_steps_after_each_point(tmp_path):
    flops = [record(i, a, loss, None) for i, (a, loss) in enumerate([("gelu,gelu", 2.0), ("swiglu,swiglu", 1.8)])]
    for r, cost in zip(flops, (1000, 1500), strict=True):
        r.trial["train_flops_per_token"] = cost
        r.trial["objectives"] = '{"val_loss": "minimize", "train_flops_per_token": "minimize"}'
        r.trial["reference_point"] = '{"val_loss": 3.0, "train_flops_per_token": 2000}'
    ax = plots.front(analysis_of(tmp_path, *flops)).axes[0]
    assert [line.get_drawstyle() for line in ax.get_lines() if line.get_drawstyle().startswith("steps")] == [
        "steps-post"
    ]


def test_the_hypervolume_axis_has_its_unit_and_no_offset(tmp_path):
    ax = plots.hypervolume(analysis_of(tmp_path, *FRONT)).axes[0]
    assert ax.get_ylabel() == "hypervolume [nats/token x tokens/s]"
    assert isinstance(ax.yaxis.get_major_formatter(), matplotlib.ticker.FuncFormatter)


def test_three_objectives_are_drawn_as_every_pair_with_the_front_marked(tmp_path):
    points = [
        ("gelu,gelu", 2.0, 0.01, 1000),
        ("swiglu,swiglu", 1.8, 0.05, 1500),
        ("gelu,swiglu", 1.9, 0.02, 1250),
        ("swiglu,gelu", 1.95, 0.06, 1250),
    ]
    rows = [record(i, a, loss, None) for i, (a, loss, _, _) in enumerate(points)]
    for r, (_, _, gap, flops) in zip(rows, points, strict=True):
        r.trial.update(
            quant_gap_int8=gap,
            train_flops_per_token=flops,
            objectives='{"val_loss": "minimize", "quant_gap_int8": "minimize", "train_flops_per_token": "minimize"}',
            reference_point='{"val_loss": 3.0, "quant_gap_int8": 1.0, "train_flops_per_token": 2000}',
        )
    analysis = analysis_of(tmp_path, *rows)
    dominated = analysis.table.set_index("assignment").loc["swiglu,gelu", "pareto"]  # by gelu,swiglu
    assert dominated == False  # noqa: E712 - a numpy bool
    fig = plots.front(analysis)
    labels = [(ax.get_ylabel().split()[0], ax.get_xlabel().split()[0]) for ax in fig.axes]
    assert labels == [
        ("val_loss", "quant_gap_int8"),
        ("val_loss", "train_flops_per_token"),
        ("quant_gap_int8", "train_flops_per_token"),
    ]
    assert not any(line.get_drawstyle().startswith("steps") for ax in fig.axes for line in ax.get_lines())
    on = [line for line in fig.axes[2].get_lines() if line.get_label() == "Pareto front (all objectives)"][0]
    assert sorted(on.get_xdata()) == [1000, 1250, 1500], "the front of all three, in every panel"
    from moesearch.analysis import interactive

    html = interactive.front_html(analysis)
    assert '"type":"splom"' in html and html.count("\\u003cb\\u003e") == 4, "every pair, every point hoverable"
    quant = plots.quantization(results.load_trials(tmp_path, "s"))
    assert quant is not None and {line.get_label() for line in quant.axes[0].get_lines()} >= {
        "gelu, int8",
        "swiglu, int8",
    }


def test_assignments_with_seed_replicates_get_error_bars_on_the_front(tmp_path):
    rows = [
        *FRONT,
        record(
            len(FRONT),
            FRONT[0].trial["assignment"],
            FRONT[0].trial["val_loss"] + 0.1,
            FRONT[0].trial["tokens_per_s"] * 0.9,
            seed=1,
        ),
    ]
    analysis = analysis_of(tmp_path, *rows)
    ax = plots.front(analysis).axes[0]
    assert "± sd over seeds" in [text.get_text() for text in ax.get_legend().get_texts()]


def test_the_quantization_plot_draws_the_symmetric_int8_of_schema_3_records(tmp_path):
    rows = [record(i, a, 2.0, 10.0) for i, a in enumerate(["gelu,gelu", "swiglu,swiglu"])]
    for r in rows:  # as schema 3 wrote them: *_int8 was symmetric, and reads as *_int8_sym
        r.trial.update(schema_version=3, quant_gap_int8=0.01, quant_gap_fp8=0.02)
    write(tmp_path, *rows)
    quant = plots.quantization(results.load_trials(tmp_path, "s"))
    labels = {line.get_label() for line in quant.axes[0].get_lines()}
    assert {"gelu, int8_sym", "swiglu, fp8"} <= labels and "gelu, int8" not in labels


def test_the_effects_picture_draws_the_model_s_intervals_and_marks_the_resolved(tmp_path):
    """A known additive table: each effect drawn at the fit's estimate, its bar spanning the fit's 95%
    interval, resolved ones filled, a panel only for the objectives with a noisy fit."""
    import numpy as np
    from test_effects import additive, table

    from moesearch.analysis import effects

    found = effects.fit(table(tmp_path, additive({0: -0.05, 2: 0.03}), 3, 2, 0.005))
    fig = plots.effects_figure({"val_loss": found, "tokens_per_s": None})
    (ax,) = fig.axes
    rows = found.effects().iloc[::-1].reset_index(drop=True)
    from matplotlib.collections import LineCollection

    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    spans = sorted((round(s[0][0], 6), round(s[1][0], 6)) for c in bars for s in c.get_segments())
    expected = sorted((round(e - h, 6), round(e + h, 6)) for e, h in zip(rows["effect"], rows["ci95"], strict=True))
    assert spans == expected, "every bar is the model's 95% interval"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "a layer (or pair): resolved" in labels and "a layer (or pair): inside noise" in labels
    assert [t.get_text() for t in ax.get_yticklabels()] == list(rows["term"])
    assert "least squares" in ax.get_title() and np.isfinite(rows["ci95"]).all()
