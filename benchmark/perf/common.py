"""Shared helper of the performance scripts: print a result table, and keep it as JSON."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from noldo.markdown import table


def report(name: str, header: Sequence[str], rows: Sequence[Sequence[Any]], out: Path | None,
           **extra: Any) -> None:
    """Print the Markdown table and, if ``out`` is given, write it with the machine description as JSON."""
    print(table(header, rows))
    if out is not None:
        out.write_text(json.dumps({"benchmark": name, "machine": platform.platform(),
                                   "python": platform.python_version(), "header": list(header),
                                   "rows": [list(r) for r in rows], **extra}, indent=2) + "\n")
