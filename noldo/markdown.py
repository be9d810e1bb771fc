"""Markdown tables: the one table builder of the catalogue, the reports and the performance scripts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; ``None`` cells are left empty.

    Example:
        >>> print(table(("a", "b"), [(1, None)]))
        | a | b |
        |---|---|
        | 1 |  |
    """
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
