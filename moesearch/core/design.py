"""A main-effects design: few assignments from which every layer's effect is estimated with equal precision.

After the uniform baselines, `search.design = "orthogonal"` queues the runs of an orthogonal array: each
layer is one column, each choice appears equally often in it, and every pair of layers meets in every pair
of choices equally often, so the layers' effects are estimated independently of one another, with the
least variance so few runs allow (8 layers of 2 choices: 12 runs, not 256). Layers with 2, 3 or 4 choices
mix: a column of L levels hosts a layer of k choices when k divides L, its levels grouped k ways, which
keeps balance and orthogonality. The arrays are pyDOE3's Taguchi tables; the smallest that hosts every
layer and leaves the noise model ERROR_DOF residual degrees of freedom is used (a saturated design fits its
runs exactly, and then no effect can be tested); pyDOE3 is imported only when a space asks for a design,
so loading a space stays light. The tables mix 2 with 4 choices, 2 with 3 only for a single 2-choice layer
(L18's 6-level column), never 3 with 4: a space no table hosts is refused at validation. Light: numpy and
pyDOE3, no torch.
"""

from __future__ import annotations

import itertools
import math
import re

from moesearch.core.errors import InputError

ERROR_DOF = 3  # residual degrees of freedom a design leaves the noise model: its t test needs some (fitted.MIN_DOF)


def runs_of(name: str) -> int:
    """The runs of a Taguchi array, from its name ('L12(2^11)': 12)."""
    return int(re.match(r"L(\d+)", name).group(1))


def arrays() -> list[tuple[str, list[int]]]:
    """pyDOE3's orthogonal arrays, smallest first: (name, level count of each column)."""
    from pyDOE3 import list_orthogonal_arrays

    found = []
    for name in list_orthogonal_arrays():
        runs = runs_of(name)
        levels = [int(level) for level, count in re.findall(r"(\d+)\^(\d+)", name) for _ in range(int(count))]
        found.append((runs, name, levels))
    return [(name, levels) for _, name, levels in sorted(found)]


def fit(choices: list[list[str]]) -> tuple[str, list[int]] | None:
    """The smallest array that hosts every layer, and the column each layer takes; None if none does."""
    by_choices = sorted(range(len(choices)), key=lambda i: -len(choices[i]))  # the hardest layers pick first
    parameters = 1 + sum(len(c) - 1 for c in choices)  # the mean and every layer's effects
    needed = min(parameters + ERROR_DOF, math.prod(len(c) for c in choices))  # a tiny space: all of it at most
    for name, levels in arrays():
        if runs_of(name) < needed:
            continue
        free, columns = list(range(len(levels))), [0] * len(choices)
        for layer in by_choices:
            k = len(choices[layer])
            hosts = [c for c in free if levels[c] % k == 0]
            if not hosts:
                break
            column = min(hosts, key=lambda c: levels[c])  # an exact match wastes no larger column
            free.remove(column)
            columns[layer] = column
        else:
            k = {len(c) for c in choices}
            if len(k) == 1 and (better := _with_last_uniform(name, levels, k.pop(), len(choices))):
                return name, better
            return name, columns
    return None


def _with_last_uniform(name: str, levels: list[int], k: int, n: int) -> list[int] | None:
    """Columns of k levels on which one run takes the last level throughout, if n such exist: the design
    then holds the all-last-choice baseline too (row 0 of every table is the all-first one), one
    training fewer for the search. Any columns of an orthogonal array are orthogonal."""
    from pyDOE3 import get_orthogonal_array

    for row in get_orthogonal_array(name):
        last = [c for c in range(len(levels)) if levels[c] == k and row[c] == k - 1]
        if len(last) >= n:
            return last[:n]
    return None


def runs(choices: list[list[str]]) -> list[list[str]]:
    """The design's assignments (layers with one choice take it in every run); InputError when no array fits."""
    varied = [i for i, c in enumerate(choices) if len(c) > 1]
    found = fit([choices[i] for i in varied])
    if found is None:
        raise InputError(too_large(choices))
    from pyDOE3 import get_orthogonal_array

    name, columns = found
    table = get_orthogonal_array(name)
    levels = dict(arrays())[name]
    design = []
    for row in table:
        assignment = [c[0] for c in choices]
        for i, column in zip(varied, columns, strict=True):
            k = len(choices[i])
            assignment[i] = choices[i][int(row[column]) * k // levels[column]]  # L levels in k equal groups
        design.append(assignment)
    if len(design) > math.prod(len(c) for c in choices):  # a tiny space (one layer of 2 has L4): all of it
        return [list(a) for a in itertools.product(*choices)]
    return design


def too_large(choices: list[list[str]]) -> str:
    """The one-line reason a space has no design."""
    counts = sorted({len(c) for c in choices})
    return (
        f"search.design 'orthogonal': no orthogonal array of pyDOE3's ({', '.join(n for n, _ in arrays())}) "
        f"hosts {len(choices)} layers of {' or '.join(map(str, counts))} choices; allowed: design = 'none', "
        "or fewer layers or choices"
    )
