# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Analysis of a moesearch study
#
# Which activation should each layer's feed-forward network use? This notebook reads one study's
# Parquet tables (no torch, no Optuna storage needed) and walks through the answer: the Pareto front
# over the study's objectives, how it compares with the uniform baselines (every layer the same
# activation), what the FFN hidden activations and the routers did in each layer, and whether the
# front survives seed noise.
#
# Open `notebooks/analysis.ipynb` in Jupyter; `analysis.py` is the same notebook as text, paired by jupytext
# (after editing either, `jupytext --sync notebooks/analysis.py`). Point it at a study with the environment
# variables `MOESEARCH_RESULTS` (the results folder; default `../results`, the repository's, seen from this
# folder) and `MOESEARCH_STUDY` (default: the only study in that folder, else the most recently written, as
# the CLI reads).
# Jupyter itself: `pip install -e '.[notebook]'`, then `jupyter notebook notebooks/analysis.ipynb`.

# %%
import os
from pathlib import Path

import pandas as pd
from IPython.display import display
from matplotlib_inline.backend_inline import set_matplotlib_formats

from moesearch.analysis import answer, curves, effects, expected, ladder, noise, pareto, plots, verdict, within_layers
from moesearch.core import results

# plots.py builds figures without pyplot, so none shows by itself: display(fig) needs the PNG formatter
set_matplotlib_formats("png")

RESULTS = Path(os.environ.get("MOESEARCH_RESULTS", "../results"))
STUDY = os.environ.get("MOESEARCH_STUDY")
if STUDY is None:  # as the CLI: the only study, else the most recently written
    found = results.studies(RESULTS)
    if not found:
        raise ValueError(f"no study has records in {RESULTS.resolve()}: set MOESEARCH_RESULTS")
    STUDY = results.most_recent(RESULTS, found)
    if len(found) > 1:
        print(
            f"the most recently written of {len(found)} studies ({', '.join(found)}); set MOESEARCH_STUDY for another"
        )
print(f"study {STUDY!r} in {RESULTS.resolve()}")

# %% [markdown]
# ## 1. The answer
#
# Which layers' choices matter, by how much, and how sure? The noise model uses every complete trial
# (seed replicates included): per-layer effects of each activation against the layer's first choice
# (gelu), least squares with 95% intervals, pure error from replicates and a lack-of-fit test
# (moesearch/analysis/effects.py). The verdict names what is resolved and what a longer study would need;
# the picture draws each effect with its interval, resolved ones filled. The expected front is the
# non-dominated set of the model's predictions, each with its probability of being non-dominated over
# posterior draws (moesearch/analysis/expected.py): the assignments to deploy, not the single trainings'
# luck. The sections after it show the evidence.

# %%
trials = results.load_trials(RESULTS, STUDY)
analysis = pareto.analyse(trials)
fit = effects.fit(trials)
print(verdict.verdict(fit))
print("\n".join(verdict.text(fit)))
found = expected.expected_front(trials)
told = answer.answer(analysis, found)  # None until every objective's model is testable
if found is not None:
    display(plots.effects_figure(found[1]))  # each effect with its 95% interval, resolved ones filled
if told is not None:  # the expected front beside the baselines, each comparison with its 95% interval
    display(answer.view(told))
    print("\n".join(answer.lines(told)[1:]))
elif found is not None:
    display(found[0][found[0]["expected_front"] | (found[0]["trained"] > 0)].head(20).round(4))
else:
    display(fit.effects().round(4) if fit else "too few trials for the noise model yet")

# %% [markdown]
# ## 2. The records
#
# Three tables, one file per trial each: `trials` (one row per trained model: assignment, seed,
# objectives, costs, provenance), `steps` (one row per optimizer step: losses, learning rate, periodic
# `val_loss`) and `layers` (one row per block: activation, expert load, hidden-activation statistics).
# `origin` says which command trained a trial; `verify` trials are seed replicates of earlier ones.

# %%
steps = results.load_steps(RESULTS, STUDY)
layers = results.load_layers(RESULTS, STUDY)
complete = trials["state"] == "COMPLETE"
counts = pd.Series(
    {
        "trials": len(trials),
        "complete": int(complete.sum()),
        "failed": int((~complete).sum()),
        "steps rows": len(steps),
        "layer rows": len(layers),
    }
)
display(counts.to_frame("count"))
display(trials.groupby(["origin", "state"]).size().to_frame("trials"))
if not complete.all():  # a failed trial's reason quotes the tail of its log
    display(trials.loc[~complete, ["trial", "assignment", "seed", "failure_reason"]])
assert complete.any() and len(steps) > 0 and len(layers) > 0

# %% [markdown]
# ## 3. The observed Pareto front
#
# The front of the trainings as they came out, noise and all (section 1's expected front is the model's).
# The unit is the assignment: one trained with several seeds counts once, at the mean of its
# objective values (± the standard deviation over seeds; the front figure below draws it as error
# bars). Marks: `*` on the front, `K` the knee
# (closest to the ideal point, objectives scaled over the front), `B` a uniform baseline. The
# hypervolume is measured against the reference point fixed when the study was created, so it can be
# compared between runs of the same study. `analysis.table` holds every assignment, unformatted.

# %%
front = pareto.front_view(analysis).set_index("assignment")
display(front)
print("\n".join(pareto.summary_lines(analysis)))  # counts, hypervolume, front members against the baselines
assert len(front) > 0

# %% [markdown]
# ## 4. Figures
#
# The assignments in objective space; the hypervolume after each trial (a curve still rising at
# the end means the search has not converged); which activation each layer takes along the front and
# in the baselines; and the learning curves of the front members and the baselines (first seed;
# dots are the periodic `val_loss` evaluations).

# %%
figures = [
    plots.front(analysis, found[0] if found else None, told),
    plots.hypervolume(analysis),
    plots.layers(analysis),
    plots.curves(analysis, steps),
]
for fig in figures:
    display(fig)
assert all(fig.axes for fig in figures)

# %% [markdown]
# Does a short run predict a long one? The rank correlation (Spearman, Kendall) of `val_loss` at each
# evaluated step with `val_loss` at the last step, over the assignments trained to the end. Early
# stopping is only as safe as this: where it is weak (below 0.5), a trial stopped early may have been
# a future front member.

# %%
rungs = curves.rung_correlation(trials, steps)
display(rungs.round(3))
print(
    "\n".join(curves.text(rungs, curves.any_pruned(trials)))
    or "no evaluations before the last step (train.eval_interval = 0)"
)
print("\n".join(curves.compute_text(trials, steps)) or "no trial was pruned (search.pruning)")

# %% [markdown]
# ## 5. Inside the layers
#
# Statistics of the FFN hidden activations (the input of the down projection) on the held-out text,
# per layer and activation, averaged over trials: the fraction near zero (|h| < 0.01) measures how
# sparse an activation makes the hidden layer, and the standard deviation its scale. Then the router:
# `load_balance` is the busiest expert's share of tokens times the number of experts (1 = perfectly
# even, `n_experts` = every token to one expert), for the front members and the baselines, mean over
# seeds. Where layers mixed activations over their experts (`gelu+swiglu`) or learned their own
# (`xielu`, `polynorm`): what each mixed layer's router chose, against the even split, and the shape each
# learnable layer learned (`results.routing_shares(layers)` has the routing at each evaluation, long form).

# %%
stats = layers.merge(trials[["trial", "assignment"]], on="trial", validate="many_to_one")
hidden = stats.pivot_table(index="layer", columns="activation", values=["hidden_near_zero_frac", "hidden_std"])
display(hidden.round(3))
display(plots.hidden(layers))
for fig in (plots.outliers(layers), plots.quantization(trials)):  # records of schema 3 have them
    if fig is not None:
        display(fig)
balance = (
    stats[stats["moe"]]
    .pivot_table(index="assignment", columns="layer", values="load_balance")
    .reindex(plots.shown(analysis)["assignment"])
)  # the order of the figures: front, then baselines
display(balance.round(3))
assert len(hidden) > 0 and (len(balance) > 0 or not layers["moe"].any())
print(
    "\n".join(within_layers.text(layers, trials.set_index("trial")["seed"]))
    or "no mixed or learnable layer in this study"
)
for fig in (plots.routing(layers), plots.learned(layers)):  # records of schema 8 and 7 have them
    if fig is not None:
        display(fig)

# %% [markdown]
# ## 6. Is the front real?
#
# A difference smaller than the spread over seeds is noise. `moesearch verify` retrains the front
# members and the baselines with fresh seeds; an assignment then stays on the front unless another
# is better in every objective even with the other at its worst (mean + sd) and itself at its best.

# %%
table = noise.replicate_table(trials)
if table.empty:
    print(
        f"no assignment has two seeds yet: run `moesearch verify SPACE --study {STUDY}` to retrain the front "
        "and the baselines with fresh seeds, then run this notebook again"
    )
else:
    display(noise.view(table, analysis.objectives).set_index("assignment"))
    print(noise.verdict(table))
assert table.empty or table["seeds"].min() >= 2

# %% [markdown]
# ## 7. Does the answer hold at another size?
#
# A study made by `moesearch promote` holds a smaller size's answer trained at a larger size of the
# space's scale ladder. For one, the rank correlation of expected values between the two sizes (with its
# 95% interval), each effect resolved below with its estimate here, and both expected fronts; from a
# second rung up, the same against the proxy. For a proxy that was promoted, the same at each larger size.

# %%
lines = ladder.section(RESULTS, STUDY, trials)
print("\n".join(lines) or f"{STUDY!r} is on no scale ladder: `moesearch promote SPACE` climbs one")
