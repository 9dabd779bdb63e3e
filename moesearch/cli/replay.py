"""`moesearch replay`: compare samplers on an exhaustive table, answering trials by lookup (no training)."""

from __future__ import annotations

from pathlib import Path

import click

from moesearch.cli import cli
from moesearch.errors import InputError


@cli.command()
@click.argument("table", type=click.Path(path_type=Path))
@click.option("--samplers", default="tpe,nsga2,random", show_default=True,
              help="Comma-separated samplers to replay (tpe, nsga2, gp, random, brute; gp takes seconds per trial).")
@click.option("--seeds", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Seeded runs per sampler.")
@click.option("--trials", "n_trials", type=click.IntRange(2), default=16, show_default=True,
              help="Trained trials per run (the budget), uniform baselines included.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Also write every curve (.csv).")
def replay(table: Path, samplers: str, seeds: int, n_trials: int, out: Path | None) -> None:
    """Replay the search loop against TABLE, an exhaustive study's trials (a Parquet file, or a study's
    trials/ folder), for several samplers and seeds; print hypervolume relative to the true front."""
    import pandas as pd

    from moesearch.files import write_atomic
    from moesearch.supervisor import replay as replay_mod
    from moesearch.supervisor.study import SAMPLERS

    chosen = [s.strip() for s in samplers.split(",")]
    if unknown := [s for s in chosen if s not in SAMPLERS]:
        raise InputError(f"--samplers: {unknown[0]!r} is not a sampler; allowed: {', '.join(SAMPLERS)}")
    if out is not None and out.suffix != ".csv":
        raise InputError(f"--out: {str(out)!r} must end in .csv")
    if not table.exists():
        raise InputError(f"TABLE: {str(table)!r} does not exist")
    trials = pd.read_parquet(table)
    exhaustive = replay_mod.load_table(trials, str(table))
    budget = min(n_trials, len(exhaustive.values))
    curves = replay_mod.compare(exhaustive, chosen, seeds, budget)
    budgets = sorted({b for b in (4, 8, 16, 32, budget) if b <= budget})
    click.echo(f"{len(exhaustive.values)} assignments, true hypervolume {exhaustive.true_hypervolume:.6g}; "
               f"{seeds} seeds per sampler; values are hypervolume / true hypervolume after N trained trials")
    click.echo(replay_mod.summary(curves, budgets).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if out is not None:
        rows = [{"sampler": s, "seed": seed, "trials": n + 1, "relative_hypervolume": v}
                for s, runs in curves.items() for seed, run in enumerate(runs) for n, v in enumerate(run)]
        write_atomic(out, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))
        click.echo(f"wrote {out}")
