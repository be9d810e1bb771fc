"""What every benchmark CLI shares: YAML configs under flags, the command wrapper, devices, run folders, curves."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import yaml

from noldo.errors import NoldoError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file of settings (a mapping; an empty file is ``{}``)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise NoldoError(f"cannot read config {path}: {exc}") from None
    if not isinstance(loaded, dict):
        raise NoldoError(f"{path}: a config holds settings (key: value), not a {type(loaded).__name__}")
    return loaded


def resolve_config(defaults: Mapping[str, Any], config: str | Path | None, flags: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults, then the YAML file, then the flags that were given (None means not given)."""
    resolved = dict(defaults)
    if config:
        loaded = read_yaml(config)
        unknown = sorted(set(loaded) - set(defaults))
        if unknown:
            raise NoldoError(f"{config}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(defaults))}")
        resolved |= loaded
    resolved |= {k: v for k, v in flags.items() if v is not None}
    return resolved


def config_from_args(defaults: Mapping[str, Any], args: argparse.Namespace, *inputs: str) -> dict[str, Any]:
    """:func:`resolve_config` of a CLI: its ``--config`` file, then every other flag but ``inputs``."""
    flags = {k: v for k, v in vars(args).items() if k not in ("config", *inputs)}
    return resolve_config(defaults, args.config, flags)


def store_root(text: str) -> str | Path:
    """A ``--data ROOT`` argument: an object-store URL (``s3://``, ``hf://``…) as it is, a path as a Path."""
    return text if "://" in text else Path(text)


def command(action: Callable[[], T], show: Callable[[T], object]) -> T:
    """The body of every benchmark CLI: run ``action`` and ``show`` its result; a :class:`NoldoError`
    ends the program with ``error: <its first line>`` and exit code 1."""
    try:
        result = action()
    except NoldoError as exc:
        fail(str(exc) or type(exc).__name__)
    show(result)
    return result


def fail(message: str) -> NoReturn:
    """Print ``error: <first line of message>`` and exit 1."""
    print(f"error: {message.splitlines()[0]}", file=sys.stderr)
    raise SystemExit(1)


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON, once per distributed run (global rank 0)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if rank_zero_only.rank == 0:
        print(json.dumps(obj, indent=2, default=str))


@dataclass(frozen=True)
class Device:
    """How a run computes: on CUDA in ``bf16-mixed`` by default, else ``32-true`` and deterministic."""

    cuda: bool
    precision: str

    @property
    def deterministic(self) -> bool:
        return not self.cuda


def select_device(accelerator: str, precision: str | None = None) -> Device:
    """CUDA when there is one and ``accelerator`` allows it (auto, gpu, cuda); a given ``precision`` wins."""
    import torch

    cuda = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    return Device(cuda, precision or ("bf16-mixed" if cuda else "32-true"))


def run_folder(run: str | Path | None, kind: str) -> Path:
    """The run folder: ``run`` or ``runs/<kind>-<timestamp>`` (Lightning logs into it beside our files)."""
    warnings.filterwarnings("ignore", message="Experiment logs directory")
    folder = Path(run) if run else Path("runs") / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_config(folder: Path, config: Mapping[str, Any]) -> None:
    (folder / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=True))


def plot_curves(metrics_csv: Path, out: Path, panels: Mapping[str, Sequence[str]]) -> Path | None:
    """Epoch curves of logged keys from a Lightning CSVLogger file as a PNG, one panel per ``panels`` entry
    (title → keys); None when nothing of it was logged."""
    import pandas as pd

    if not metrics_csv.exists():
        return None
    table = pd.read_csv(metrics_csv)
    return plot_panels(out, {title: {key: table.dropna(subset=[key]).groupby("epoch")[key].mean()
                                     for key in keys if key in table} for title, keys in panels.items()})


def plot_panels(out: Path, panels: Mapping[str, Mapping[str, Any]]) -> Path | None:
    """A PNG of epoch curves, one panel per ``panels`` entry (title → {label: pandas Series indexed by
    epoch}); panels without a curve are left out, None when none has one."""
    from matplotlib.figure import Figure  # no pyplot: no backend switch, nothing left open

    shown = {title: curves for title, curves in panels.items() if curves}
    if not shown:
        return None
    fig = Figure(figsize=(6 * len(shown), 4))
    for ax, (title, curves) in zip(fig.subplots(1, len(shown), squeeze=False)[0], shown.items(), strict=True):
        for label, series in curves.items():
            ax.plot(series.index, series.values, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out
