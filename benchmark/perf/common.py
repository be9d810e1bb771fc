"""Shared helpers of the performance scripts: Markdown tables and JSON results."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def report(name: str, header: Sequence[str], rows: Sequence[Sequence[Any]], out: Path | None,
           **extra: Any) -> None:
    """Print the table and, if ``out`` is given, write it with the machine description as JSON."""
    print(markdown_table(header, rows))
    if out is not None:
        out.write_text(json.dumps({"benchmark": name, "machine": platform.platform(),
                                   "python": platform.python_version(), "header": list(header),
                                   "rows": [list(r) for r in rows], **extra}, indent=2) + "\n")
