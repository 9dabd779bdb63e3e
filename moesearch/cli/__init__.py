"""The moesearch command line: a thin click group, one module per command.

Bad input raises InputError (or a click usage error) and is printed on one line with exit code 2.
"""

from __future__ import annotations

import sys

import click

from moesearch.core import preempt
from moesearch.core.errors import InputError


class _Group(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except (InputError, click.UsageError) as e:
            message = e.format_message() if isinstance(e, click.UsageError) else str(e)
            click.echo(f"moesearch: error: {' '.join(message.split())}", err=True)
            sys.exit(2)
        except click.Abort:
            click.echo(
                "moesearch: interrupted; every finished trial is recorded, and the same command resumes", err=True
            )
            sys.exit(130)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except Exception as e:  # last: click's own exceptions are Exceptions too
            if not _group_start_failure(e):
                raise
            click.echo(f"moesearch: {e}", err=True)
            sys.exit(0 if preempt.requested() else 1)  # preempted: exit 0, so the scheduler requeues the job
        sys.exit(code if isinstance(code, int) else 0)


def _group_start_failure(error: Exception) -> bool:
    """A worker group that never came up. Only commands that train import the group's module, and the
    CLI imports every side lazily (startup time), so a module not yet imported raised nothing of it."""
    group = sys.modules.get("moesearch.supervisor.group")
    return group is not None and isinstance(error, group.GroupStartFailure)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="moesearch")
def cli() -> None:
    """Search per-layer FFN activations of a DeepSpeed MoE transformer with real training runs."""


def main() -> None:
    cli()


# Each module adds its command to `cli`; imported last so that `cli` exists.
from moesearch.cli import (  # noqa: E402,F401
    compact,
    coords,
    node,
    pareto,
    plot,
    promote,
    replay,
    report,
    search,
    spaces,
    status,
    train,
    verify,
    worker,
)
