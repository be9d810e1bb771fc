"""What every benchmark CLI shares: YAML configs under command-line flags, run folders, loss curves."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml


class UserError(Exception):
    """Bad input the user can fix; the CLIs print it as one line and exit 2."""


def resolve_config(defaults: Mapping[str, Any], config: str | Path | None, flags: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, then the YAML file, then the flags that were given (None means not given)."""
    resolved = dict(defaults)
    if config:
        try:
            loaded = yaml.safe_load(Path(config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"cannot read config {config}: {exc}") from None
        unknown = sorted(set(loaded) - set(defaults))
        if unknown:
            raise UserError(f"{config}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
        resolved |= loaded
    resolved |= {k: v for k, v in flags.items() if v is not None}
    return resolved


def run_folder(out: str | Path | None, kind: str) -> Path:
    """The run folder: ``out`` or ``runs/<kind>-<timestamp>`` (Lightning logs into it beside our files)."""
    warnings.filterwarnings("ignore", message="Experiment logs directory")
    folder = Path(out) if out else Path("runs") / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_config(folder: Path, config: Mapping[str, Any]) -> None:
    (folder / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=True))


def plot_curves(metrics_csv: Path, out: Path, keys: Sequence[str]) -> Path | None:
    """Epoch curves of the logged ``keys`` from a Lightning CSVLogger file, as a PNG."""
    import pandas as pd
    from matplotlib.figure import Figure  # no pyplot: no backend switch, nothing left open

    if not metrics_csv.exists():
        return None
    table = pd.read_csv(metrics_csv)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for key in keys:
        if key in table:
            series = table.dropna(subset=[key]).groupby("epoch")[key].mean()
            ax.plot(series.index, series.values, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def fail(message: str) -> None:
    """Print a one-line error and exit 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))
