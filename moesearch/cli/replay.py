"""`moesearch replay`: compare search arms on an exhaustive table, answering trials by lookup (no training);
with seed replicates in the table, each query draws one of its trainings, and arms are scored by the truth."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli
from moesearch.core.errors import InputError


@cli.command()
@click.argument("table", type=click.Path(path_type=Path))
@click.option(
    "--steps",
    "steps_path",
    type=click.Path(path_type=Path),
    help="The table's steps (learning curves), needed to replay pruning [default: beside TABLE: "
    "X-steps.parquet for X-trials.parquet, or the study's steps/ folder].",
)
@click.option(
    "--samplers",
    default="tpe,nsga2,random,hand",
    show_default=True,
    help="Comma-separated proposers: tpe, nsga2, gp, random, brute (Optuna samplers), design (tpe after the "
    "baselines and an orthogonal main-effects design, as search.design = 'orthogonal') or hand "
    "(baselines, then flip one layer at a time, keep improvements); gp takes seconds per trial.",
)
@click.option(
    "--pruning",
    default="none",
    show_default=True,
    help="Comma-separated pruning methods, each replayed with every sampler: none, mo-asha.",
)
@click.option(
    "--rungs",
    help="Pruning rungs (steps), comma-separated [default: about 1/eta^2 and 1/eta of the "
    "training steps (1/9 and 1/3 for eta 3), at evaluated steps].",
)
@click.option("--eta", type=click.IntRange(2), default=3, show_default=True, help="Keep the best 1/eta at each rung.")
@click.option(
    "--min-records",
    type=click.IntRange(1),
    default=6,
    show_default=True,
    help="Records a rung needs before it stops anything.",
)
@click.option(
    "--replicates",
    default="off",
    show_default=True,
    help="Comma-separated: off, auto (after the search, train what search.replicates = 'auto' asks for, "
    "each answered by another of the assignment's trainings; the search gets budget/(1 + share)); "
    "each replayed with every sampler and pruning method. auto needs --score-points.",
)
@click.option(
    "--replicate-share",
    type=click.FloatRange(0, 1),
    default=0.25,
    show_default=True,
    help="With --replicates auto: at most this share of the search's trials again (search.replicate_share).",
)
@click.option(
    "--score-points",
    type=click.IntRange(0, 100),
    default=8,
    show_default=True,
    help="Score every run by the table's truth (its expected front over every training) at this many "
    "budgets, evenly spaced; 0: hypervolume only (faster).",
)
@click.option(
    "--regret-target",
    type=click.FloatRange(0, min_open=True),
    default=0.005,
    show_default=True,
    help="Report the least budget from which the median regret stays at most this (quality's units: nats).",
)
@click.option("--first-seed", type=click.IntRange(0), default=0, show_default=True, help="The first seed of each arm.")
@click.option("--seeds", type=click.IntRange(1, 10_000), default=100, show_default=True, help="Seeded runs per arm.")
@click.option(
    "--budget",
    type=click.IntRange(1),
    help="Compute per run, in optimizer steps [default: training every assignment once].",
)
@click.option(
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Processes replaying side by side (one per core is about right).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write every curve (.csv), and with --score-points every score (X-truth.csv beside X.csv). "
    "Each run is kept in X-runs.jsonl as it ends: the same command again resumes a stopped replay, and "
    "with more seeds or arms replays only what is new.",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also draw relative hypervolume against compute, median and quartiles per arm (.png).",
)
def replay(
    table: Path,
    steps_path: Path | None,
    samplers: str,
    pruning: str,
    rungs: str | None,
    eta: int,
    min_records: int,
    replicates: str,
    replicate_share: float,
    score_points: int,
    regret_target: float,
    first_seed: int,
    seeds: int,
    budget: int | None,
    jobs: int,
    out: Path | None,
    progress: bool,
    plot_path: Path | None,
) -> None:
    """Replay the search against TABLE, an exhaustive study's trials (a Parquet file, or a study's
    trials/ folder), for several samplers x pruning methods x replicates and seeds; print the compute
    each needs to reach 90% and 95% of the true front's hypervolume, and (--score-points) the regret of
    what each recommends against the table's expected front, and how often its resolved members are
    truly on it."""
    import pandas as pd

    from moesearch.core.files import write_atomic
    from moesearch.core.sections import PruningSpec
    from moesearch.replay import arms as arms_mod
    from moesearch.replay import table as table_mod
    from moesearch.replay import truth as truth_mod

    proposers = _list("--samplers", samplers, arms_mod.PROPOSERS)
    methods = _list("--pruning", pruning, ("none", "mo-asha"))
    replicate_modes = _list("--replicates", replicates, arms_mod.REPLICATES)
    for flag, path, suffix in (("--out", out, ".csv"), ("--plot", plot_path, ".png")):
        if path is not None and path.suffix != suffix:
            raise InputError(f"{flag}: {str(path)!r} must end in {suffix}")
    if not table.exists():
        raise InputError(f"TABLE: {str(table)!r} does not exist")
    steps_path = steps_path or _beside(table)
    needs_curves = methods != ["none"]
    if needs_curves and (steps_path is None or not steps_path.exists()):
        raise InputError(
            f"--steps: {str(steps_path) if steps_path else 'no steps table beside TABLE'} does not exist; "
            "replaying --pruning needs the table's learning curves"
        )
    steps = _read("--steps", steps_path, "step") if steps_path is not None and steps_path.exists() else None
    exhaustive = table_mod.load_table(_read("TABLE", table, "state", "assignment"), str(table), steps)
    rung_steps = _rungs(rungs, exhaustive, eta) if needs_curves else []
    if score_points and exhaustive.truth is None and replicate_modes == ["off"]:
        click.echo("no truth to score by: the table has too few trials for a noise model; hypervolume only")
        score_points = 0
    arms = [
        arms_mod.Arm(
            p, PruningSpec(method=m, rungs=rung_steps if m != "none" else [], eta=eta, min_records=min_records), r
        )
        for r in replicate_modes
        for m in methods
        for p in proposers
    ]
    seed_range = range(first_seed, first_seed + seeds)
    checkpoint = None
    if out is not None:
        from moesearch.replay import checkpoint as checkpoint_mod

        made_by = checkpoint_mod.settings(exhaustive, budget, None, score_points, replicate_share)
        checkpoint = checkpoint_mod.Checkpoint(out.with_name(f"{out.stem}-runs.jsonl"), made_by)
        if kept := sum(checkpoint.kept(arm, s) is not None for arm in arms for s in seed_range):
            click.echo(f"resuming: {kept} of {len(arms) * seeds} runs kept in {checkpoint.path}")
    runs = arms_mod.compare(
        exhaustive,
        arms,
        seed_range,
        budget,
        jobs=jobs,
        score_points=score_points,
        share=replicate_share,
        progress=progress,
        checkpoint=checkpoint,
    )
    unit = f"optimizer steps ({exhaustive.full_steps} per full trial)" if exhaustive.full_steps else "trials"
    click.echo(
        f"{len(exhaustive.values)} assignments, true hypervolume {exhaustive.true_hypervolume:.6g}; seeds "
        f"{seed_range.start}-{seed_range.stop - 1} per arm; compute in {unit}"
        + (f"; rungs {rung_steps}, eta {eta}, min_records {min_records}" if needs_curves else "")
    )
    click.echo(
        arms_mod.summary(exhaustive, runs, budget_steps=budget).to_string(
            index=False, float_format=lambda v: f"{v:,.3g}"
        )
    )
    if score_points:
        _print_truth(exhaustive, runs, regret_target, unit, replicate_share if "auto" in replicate_modes else None)
    if out is not None:
        rows = [
            {"arm": arm, "seed": seed, "trial": n + 1, "steps": int(spent), "relative_hypervolume": rel}
            for arm, arm_runs in runs.items()
            for seed, run in zip(seed_range, arm_runs, strict=True)
            for n, (spent, rel) in enumerate(zip(run.spent, run.relative, strict=True))
        ]
        write_atomic(out, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
        click.echo(f"wrote {out}")
        if score_points:
            truth_out = out.with_name(f"{out.stem}-truth.csv")
            write_atomic(truth_out, lambda tmp: truth_mod.truth_rows(runs, seed_range).to_csv(tmp, index=False))
            click.echo(f"wrote {truth_out}")
    if plot_path is not None:
        from moesearch.analysis.plots import replay_curves, save_png

        save_png(
            replay_curves(
                runs, budget or exhaustive.full_steps * len(exhaustive.values) or len(exhaustive.values), unit
            ),
            plot_path,
        )
        click.echo(f"wrote {plot_path}")


def _print_truth(table, runs, target: float, unit: str, share: float | None) -> None:
    """The truth's score per arm, after a line that says what the truth is and how it is scored."""
    import math

    from moesearch.replay import truth as truth_mod

    q, c = table.quality, table.cost
    on = int(truth_mod.truly_on_front(table).sum())
    n_seeds = table.frame["seed"].nunique()
    trainings = len(table.frame)
    blocks = (table.frame["random_streams"] == "crn").all() and n_seeds > 1
    click.echo(
        f"scored by the truth: the expected front of the noise model over all {trainings} trainings "
        f"({len(table.values)} assignments, up to {table.seeds} seed{'s' * (table.seeds > 1)} each, "
        f"{n_seeds} seed{'s' * (n_seeds > 1)} in all"
        f"{', each a block: common random numbers' if blocks else ''}); "
        f"{int(table.truth['expected_front'].sum())} on it"
    )
    levels = "one level" if c is None else f"each of {table.truth[c].nunique()} levels of {c}"
    click.echo(
        f"regret: of the {q} each arm's own noise model predicts best at {levels} (true cost), against the "
        f"best expected {q} there; the median over seeds of the largest over levels, at each budget in {unit}"
        + (f"; +replicates search budget/(1 + {share:g}), then replicates" if share is not None else "")
    )
    click.echo(
        f"right: of the members an arm calls resolved on the front at the last budget, the share truly on "
        f"it: on the table's expected front, or its 95% interval of {q} reaches the front's expected {q} "
        f"at its cost ({on} of {len(table.truth)} candidates pass); 'strictly on': on the expected front "
        f"itself ({int(table.truth['expected_front'].sum())} pass); the lone cheapest candidate is on every "
        f"front, so 'right beyond it' leaves it out"
    )
    click.echo(
        f"to <={target:g}: the least budget from which the median regret stays at most {target:g}, with its 95% "
        "interval over seeds (bootstrap; inf: not within the budget); vs tpe: that budget over tpe's, where "
        "tpe ran (0: tpe's median never got there, inf: this arm's never did)"
    )
    out = truth_mod.truth_summary(runs, target)
    click.echo(out.to_string(index=False, float_format=lambda v: "inf" if math.isinf(v) else f"{v:,.4g}"))


def _list(flag: str, given: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [s.strip() for s in given.split(",") if s.strip()]
    bad = [s for s in chosen if s not in allowed] if chosen else [given]
    if bad:
        raise InputError(f"{flag}: {bad[0]!r} is not one of them; allowed: {', '.join(allowed)}")
    return chosen


def _read(flag: str, path: Path, *columns: str):
    """A Parquet file or folder of them with these columns, or one line naming the flag and the file."""
    import pandas as pd

    allowed = "allowed: an exhaustive study's records (X-trials.parquet, or a study's trials/ folder; steps beside)"
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        raise InputError(f"{flag}: {str(path)!r} is not Parquet; {allowed}") from None
    if missing := [c for c in columns if c not in frame.columns]:
        raise InputError(f"{flag}: {str(path)!r} has no column {missing[0]!r}; {allowed}")
    return frame


def _beside(table: Path) -> Path | None:
    """X-steps.parquet beside X-trials.parquet, or steps/ beside a study's trials/ folder."""
    if table.name == "trials":
        return table.parent / "steps"
    if table.name.endswith("-trials.parquet"):
        return table.with_name(table.name.removesuffix("-trials.parquet") + "-steps.parquet")
    return None


def _rungs(given: str | None, table, eta: int) -> list[int]:
    evaluated = sorted(table.at_step)
    if not evaluated:
        raise InputError(
            "--pruning: the table's steps have no val_loss before the last step (train.eval_interval "
            "was 0), so there is no rung to replay"
        )
    if given is None:  # successive halving's geometric rungs: about 1/eta^2 and 1/eta of training
        wanted = [table.full_steps / eta**2, table.full_steps / eta]
        return sorted({min(evaluated, key=lambda s: abs(s - w)) for w in wanted})
    try:
        chosen = [int(r) for r in given.split(",")]
    except ValueError:
        chosen = None
    if not chosen or any(r not in table.at_step for r in chosen) or chosen != sorted(set(chosen)):
        raise InputError(
            f"--rungs: {given!r} is not increasing steps at which the table has val_loss; allowed: "
            f"{', '.join(map(str, evaluated))}"
        )
    return chosen
