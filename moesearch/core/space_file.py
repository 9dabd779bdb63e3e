"""A validated space written back as a space file: every default filled in, each key's meaning (its field
docstring) as a comment above it, and the activation and metric names a space may use at the end.

`moesearch spaces show default > mine.toml` starts a space of one's own; what it writes loads back to
the same space (tested for every shipped one). tomlkit writes the comments: tomllib only reads.
"""

from __future__ import annotations

import textwrap

import tomlkit
from pydantic import BaseModel
from tomlkit.items import Table

from moesearch.core.activations import REGISTRY
from moesearch.core.metrics import METRICS
from moesearch.core.space import Space

WIDTH = 100  # comment lines, as the shipped space files wrap them


def documented(spec: Space) -> str:
    """`spec` as TOML, documented."""
    doc = tomlkit.document()
    _fill(doc, spec)
    doc.add(tomlkit.nl())
    baselines = ", ".join(u[0] for u in spec.uniform_assignments())
    doc.add(tomlkit.comment(f"{spec.size():,} assignments; baselines: {baselines}"))
    gated = [name for name, activation in REGISTRY.items() if activation.gated]
    doc.add(tomlkit.comment(f"activations a layer may take: {', '.join(REGISTRY)} (gated: {', '.join(gated)})"))
    doc.add(tomlkit.comment("metrics an objective may name (search.objectives), in their units:"))
    for name, (unit, meaning) in METRICS.items():
        for line in textwrap.wrap(f"{name} ({unit}): {meaning}", WIDTH - 4, subsequent_indent="    "):
            doc.add(tomlkit.comment(f"  {line}"))
    return tomlkit.dumps(doc)


def _fill(table: tomlkit.TOMLDocument | Table, section: BaseModel) -> None:
    """Keys first, then sub-sections as tables and lists of them as arrays of tables (TOML's order); an
    unset key stays a comment: its field's example, valid TOML once uncommented (activations and per_layer
    are alternatives: one of them is always a comment)."""
    fields = type(section).model_fields
    subsections = [name for name in fields if isinstance(getattr(section, name), BaseModel)]
    arrays = [name for name in fields if _is_table_list(fields[name].annotation)]
    for name in (n for n in fields if n not in subsections + arrays):
        _comment(table, fields[name].description)
        value = getattr(section, name)
        if value is None:
            example = tomlkit.dumps({name: fields[name].examples[0]}).strip()  # every optional key has one
            table.add(tomlkit.comment(f"{example}  # unset; for example"))
        else:
            table.add(name, _plain(value))
    for name in subsections:
        sub = tomlkit.table()
        _comment(sub, fields[name].description)
        _fill(sub, getattr(section, name))
        table.add(tomlkit.nl())
        table.add(name, sub)
    for name in arrays:
        table.add(tomlkit.nl())
        _comment(table, fields[name].description)
        items = getattr(section, name)
        if not items:
            table.add(tomlkit.comment(f"[[{name}]]: none"))
            continue
        tables = tomlkit.aot()
        for item in items:
            tables.append(tomlkit.item(item.model_dump(exclude_none=True)))
        table.add(name, tables)


def _is_table_list(annotation: object) -> bool:
    """list[SomeSection]: written as [[name]] tables."""
    args = getattr(annotation, "__args__", ())
    return getattr(annotation, "__origin__", None) is list and bool(args) and issubclass(args[0], BaseModel)


def _comment(table: tomlkit.TOMLDocument | Table, text: str | None) -> None:
    for line in textwrap.wrap(" ".join((text or "").split()), WIDTH - 2):
        table.add(tomlkit.comment(line))


def _plain(value: object) -> object:
    """Dicts as inline tables, so a section's keys stay together above its sub-sections."""
    if isinstance(value, dict):
        inline = tomlkit.inline_table()
        inline.update(value)
        return inline
    return value
