"""The noise model in words: the one verdict line a study ends with, and each objective's effects line by line.

What `analysis/effects.py` fits, read out: which effects are resolved (the fit's weighted Holm test,
`analysis/fitted.py`), which lie
inside noise, and how many more trials would resolve a per-layer effect of a given size. Light: no torch.
"""

from __future__ import annotations

from moesearch.analysis.effects import OUTLIER_P
from moesearch.analysis.fitted import ALPHA, LACK_OF_FIT_P, MIN_DOF, PAIRS_ALPHA, POWER, Fit, every_layer
from moesearch.analysis.power import noise_interval
from moesearch.core.metrics import METRICS

SIZE = 0.02  # the per-layer effect a study is asked to resolve (nats): the size of most effects at our scale
RELATIVE = 0.02  # in an objective of other units (throughput, memory), the effect that matters: 2% of its level


def size_for(found: Fit) -> float:
    """The per-layer effect that matters on `found`'s objective, in its units: the space's search.effect_size
    where it sets one, else SIZE for a loss (nats/token) and RELATIVE of the objective's level for the others
    (2% of tokens/s, not 0.02 tokens/s)."""
    if found.matters is not None:
        return found.matters
    if METRICS.get(found.objective, ("",))[0] == "nats/token":
        return SIZE
    return RELATIVE * abs(found.y_mean)


def amount(found: Fit, value: float) -> str:
    """An effect size in the objective's units: '0.020' for a loss, '2.0% (1,530 tokens/s)' otherwise."""
    if METRICS.get(found.objective, ("",))[0] == "nats/token":
        return f"{value:.3f}"
    unit = METRICS.get(found.objective, ("",))[0]
    return f"{value / abs(found.y_mean):.1%} ({value:,.3g} {unit})".replace(" )", ")")


def text(found: Fit | None, size: float | None = None) -> list[str]:
    """The model in words: how it was fitted, its noise, each effect resolved or not, and what more it needs."""
    if found is None:
        return ["per-layer effects: too few trials for a model (3 complete trials of 2 assignments at least)"]
    o = found.objective
    blocked = any(t.seed is not None for t in found.terms)
    how = (
        f"residual sd {found.sigma:.4f}; 95% intervals; resolved: weighted Holm over the effects at {ALPHA:.0%}"
        if found.testable
        else f"shrunk: a guide, {_untestable(found)}, nothing called resolved"
    )
    lines = [
        f"per-layer effects on {o} ({found.method} over {found.n_trials} trials of {found.n_assignments} "
        f"assignments{', seeds as blocks' if blocked else ''}; {how}):"
    ]
    lines += [f"  {line}" for line in _scope(found)]
    if found.pure_error:
        sd, df = found.pure_error
        lines.append(f"  one training's noise, from replicated assignments: sd {sd:.4f} ({df} degrees of freedom)")
    if found.set_aside:
        lines.append(
            f"  set aside, fitted without: {_aside(found)} (externally studentised residual under main effects, "
            f"Bonferroni p below {OUTLIER_P} over the trainings: a diverging or broken training, not noise)"
        )
    if found.lack_of_fit:
        f_stat, p = found.lack_of_fit
        weak = (
            f" (pure error on {found.pure_error[1]} degrees of freedom: a weak test)" if found.pure_error[1] < 5 else ""
        )
        lines.append(
            f"  lack of fit of main effects: F {f_stat:.2f}, p {p:.3f}: "
            + (
                "main effects miss something (layers interact)"
                if p < LACK_OF_FIT_P
                else f"no evidence that main effects miss anything{weak}"
            )
        )
    if found.testable:
        lines.append(f"  {_interactions(found)}")
    for r in found.effects().itertuples():
        if found.testable:
            lines.append(f"  {r.term} {r.effect:+.4f} ± {r.ci95:.4f} ({_label(found, r)})")
        else:  # a shrunk estimate's interval is a guide, never a test: no false precision
            lines.append(f"  {r.term}: not testable yet")
    if found.resolvable() is not None:
        lines.append(f"  {_needs(found, size)}")
        if found.testable:  # the count takes the noise as estimated; the estimate has a spread of its own
            lo, hi = noise_interval(found.error_sd, found.dof)
            lines.append(
                f"  (that takes the noise as estimated, {found.error_sd:.4f}; from {found.dof:g} degrees of freedom "
                f"it may be {lo:.4f} to {hi:.4f} (95%), and the trials needed scale with its square)"
            )
    return lines


def _scope(found: Fit) -> list[str]:
    """Whom the effects speak for: one seed, the trained seeds, or any seed (tested across seeds)."""
    if found.n_seeds == 1:
        return [
            "one seed: every effect here is this seed's (its initialisation and batch order); the same "
            "assignments at a second seed show whether it holds across seeds (`moesearch verify`)"
        ]
    if found.seed_by_effect:
        sd, dof, p = found.seed_by_effect
        return [
            f"across seeds: each effect is its mean over the {found.n_seeds} seeds, tested against how much the "
            f"effects vary from seed to seed, never less than the noise within a seed (sd {sd:.4f}, {dof} degrees "
            f"of freedom; that the seeds change the effects: p {p:.3f}), so a resolved effect holds for a new "
            "seed, not only these"
        ]
    if any(t.seed is not None for t in found.terms):
        return [
            f"at the trained seeds: no effect is seen at two seeds (only the level is), so each effect is the "
            f"{found.n_seeds} seeds' mix and may not hold for another; assignments trained at two seeds show "
            "whether they do (`moesearch verify`)"
        ]
    return []


def _interactions(found: Fit) -> str:
    """Whether the neighbouring layers' interactions were tested, and what that leaves the layers' effects."""
    pairs = sum((len(a) - 1) * (len(b) - 1) for a, b in zip(found.choices, found.choices[1:], strict=False))
    if not pairs:
        return "one layer: no interactions to test"
    if found.interactions is None:
        main = sum(t.seed is None for t in found.terms)
        need = len(found.terms) + pairs + 1 + MIN_DOF
        return (
            f"neighbour interactions: untestable with these trials ({need} trials of assignments that tell them "
            f"apart would test them); each layer's effect is its average over the other layers' choices as "
            f"trained, and an interaction between layers would go unseen ({main} main effects tested)"
        )
    tested = found.pairs()
    resolved = int(tested["resolved"].sum())
    return (
        f"neighbour interactions: {len(tested)} tested as their own family (Holm at {PAIRS_ALPHA:.1%}), "
        f"{resolved} resolved{' (listed below)' if resolved else ''}; each layer's effect is its average over "
        "the other layers' choices as trained"
    )


def _aside(found: Fit) -> str:
    """The trainings set aside as outlying: 'trial 7 (val_loss 3.1000)'."""
    return ", ".join(f"trial {n} ({found.objective} {v:.4f})" for n, v in found.set_aside)


def _untestable(found: Fit) -> str:
    """Why a shrunk fit is not tested."""
    if found.aliased:
        return "these assignments cannot tell the layers apart"
    return "too few trials to test"


def _label(found: Fit, row) -> str:
    """One effect's standing, the same words in the verdict line and the table."""
    if not found.testable:
        return "shrunk, untested"
    if row.resolved:
        return "resolved"
    return "interval misses 0, not resolved over the family" if abs(row.effect) > row.ci95 else "inside noise"


def _needs(found: Fit, size: float | None) -> str:
    """What these trials resolve, or how many more a per-layer effect of `size` (None: `size_for`) needs."""
    size = size_for(found) if size is None else size
    now, need = found.resolvable(), found.trials_to_resolve(size)
    if found.aliased:  # "trials like these" would alias them too
        return (
            "new assignments would separate the layers' effects (search.design = 'orthogonal' queues them); "
            "more seeds of these would not"
        )
    if not found.testable:  # a shrunk fit's noise can collapse: no size or count is read from it
        more = found.trials_to_test() - found.n_trials
        return (
            f"a test needs {found.trials_to_test()} trials ({more} more, of new assignments or seeds) before any "
            "effect can be resolved or a trial count estimated"
        )
    if need is None or need <= found.n_trials:
        return f"these trials resolve a per-layer effect of {amount(found, now)} or more ({POWER:.0%} of the time)"
    return (
        f"a per-layer effect of {amount(found, size)} needs about {need} trials like these to resolve "
        f"({need - found.n_trials} more than these {found.n_trials}, which resolve {amount(found, now)} or more)"
    )


def trials_for(found: Fit | None, size: float | None = None) -> int | None:
    """The trials in all that would resolve a per-layer effect of `size` (None: the one that matters on the
    objective, `size_for`) (a shrunk fit: that would make its
    effects testable), where that is more than these and more like these would help (not where the
    assignments alias the layers); else None."""
    if found is None or found.aliased:
        return None
    if not found.testable:
        return found.trials_to_test()
    need = found.trials_to_resolve(size_for(found) if size is None else size)
    return need if need is not None and need > found.n_trials else None


def _noise_word(found: Fit) -> str:
    """What the error sd is: across seeds the effects' seed-by-effect variation; under seed blocks the noise
    within a seed, which is less than one training's."""
    if found.seed_by_effect:
        return "seed-by-effect sd"
    return "within-seed sd" if any(t.seed is not None for t in found.terms) else "one training's sd"


def _scope_word(found: Fit) -> str:
    """The verdict line's last words: whom its effects speak for."""
    if found.n_seeds == 1:
        return "effects of one seed"
    return (
        f"effects across {found.n_seeds} seeds" if found.seed_by_effect else f"effects of these {found.n_seeds} seeds"
    )


def verdict(found: Fit | None, size: float | None = None) -> str:
    """One line first: the every-layer answer (is the activation better here at all?), then which layers'
    choices matter and by how much, or that nothing is resolved and what would resolve it."""
    if found is None:
        return "verdict: too few trials to say anything yet (a model needs 3 complete trials of 2 assignments)"
    effects = found.effects()
    every = effects[every_layer(effects)]
    layers = effects[effects["kind"] == "layer"]
    pairs = effects[(effects["kind"] == "pair") & effects["resolved"]]
    more = "" if found.resolvable() is None else f"; {_needs(found, size)}"
    if len(pairs):
        more = (
            "; interaction resolved: "
            + "; ".join(f"{r.term} {r.effect:+.3f} ± {r.ci95:.3f}" for r in pairs.itertuples())
            + more
        )
    if found.set_aside:
        more += f"; set aside as outlying: {_aside(found)}"
    if not found.testable:
        return (
            f"verdict: {_untestable(found)}: {len(layers)} per-layer effects on {found.objective} from "
            f"{found.n_trials} trials, estimated shrunk{more}"
        )
    first = "".join(f"{r.term} {r.effect:+.3f} ± {r.ci95:.3f}, {_label(found, r)}; " for r in every.itertuples())
    clear = layers[layers["resolved"]]
    if not effects["resolved"].any():
        width = layers["ci95"].median() if len(layers) else float("nan")
        return (
            f"verdict: nothing resolved: {first}no per-layer effect on {found.objective} is resolved "
            f"(typical ±{width:.3f}, {_noise_word(found)} {found.error_sd:.3f}){more}; {_scope_word(found)}"
        )
    said = "; ".join(f"{r.term} {r.effect:+.3f} ± {r.ci95:.3f}" for r in clear.itertuples())
    rest = len(layers) - len(clear)
    return (
        f"verdict: {first}{len(clear)} of {len(layers)} per-layer effects on {found.objective} resolved"
        f"{f': {said}' if said else ''}{f'; {rest} not resolved' if rest and said else ''}{more}; {_scope_word(found)}"
    )
