"""What the ``noldo`` commands share: the store location argument and options, source flags, output, errors.

Naming convention (docs/architecture.md, "Command lines"): a store a command reads or describes is
the positional ``ROOT``; a store a command creates or extends is ``--out ROOT``; any other output
has its own name (``--png FILE``). Old spellings stay as hidden aliases.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from typing import Any

import click

from noldo.errors import NoldoError
from noldo.location import StoreLocation
from noldo.sources import SOURCES, Option


class UserError(click.ClickException):
    """Printed as one ``error: ...`` line on stderr, exit status 1."""

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class Group(click.Group):
    """A click group that turns user errors into one line on stderr and a non-zero exit."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except NoldoError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:  # disk full, permissions, missing files: no traceback, say what failed
            where = f" ({exc.filename})" if exc.filename else ""
            raise UserError(f"{exc.strerror or exc}{where}") from None
        except Exception as exc:  # an object store's client refusing (credentials, endpoint): one line
            if type(exc).__module__.split(".")[0] not in _STORAGE_CLIENTS:
                raise
            raise UserError(f"object store: {type(exc).__name__}: {exc}") from None


#: Packages whose errors mean the object store could not be reached or refused us (not a noldo bug).
_STORAGE_CLIENTS = {"botocore", "aiobotocore", "s3fs", "gcsfs", "google", "adlfs", "azure", "huggingface_hub",
                    "aiohttp"}


def setup_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING + 10 * (quiet - verbose)
    logging.basicConfig(level=max(logging.DEBUG, level), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def dumps(obj: object) -> str:
    """Indented JSON with flat lists (shapes, dims) kept on one line."""
    return re.sub(r"\[\s+([^\[\]{}]+?)\s+\]", lambda m: "[" + re.sub(r"\s*\n\s*", " ", m[1]) + "]",
                  json.dumps(obj, indent=2))


def progress(ctx: click.Context) -> bool:
    """Progress bars only on a terminal, and not with -q."""
    return ctx.find_root().obj["quiet"] == 0 and sys.stderr.isatty()


class StoreRoot(click.ParamType):
    """A store location: a local directory, or an object-store URL opened with ``noldo --storage-option``
    (see :class:`noldo.location.StoreLocation`)."""

    name = "ROOT"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> StoreLocation:
        if isinstance(value, StoreLocation):
            return value
        options = ((ctx.find_root().obj or {}) if ctx else {}).get("storage_options")
        try:
            return StoreLocation(value, storage_options=options)
        except NoldoError as exc:
            self.fail(str(exc), param, ctx)


def storage_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as fsspec storage options; a VALUE that reads as JSON (``true``, ``3``,
    ``{"a": 1}``) is taken as that value, any other as a string."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair.split('=')[0]!r} is not KEY=VALUE", param_hint="--storage-option")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


#: ``--break-lock``: for writers on object storage whose lease was left by a process that died.
break_lock_option = click.option(
    "--break-lock", is_flag=True,
    help="Remove the split's lease on object storage first, if its holder died without releasing it (make sure "
         "it is gone: two writers at once are not safe). Local locks are released by the OS and never need it.")


#: The store a command reads or describes.
ROOT = click.argument("root", type=StoreRoot())


class Aliased(click.Option):
    """An option that also answers to old spellings (``aliases``), which ``--help`` does not show."""

    def __init__(self, *args: Any, aliases: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases = tuple(aliases)
        self.opts.extend(self.aliases)

    def get_help_record(self, ctx: click.Context):
        shown = self.opts
        self.opts = [o for o in shown if o not in self.aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def out_option(help: str, required: bool = True, aliases: tuple[str, ...] = ()) -> Callable:
    """``--out ROOT``: the store a command creates or extends."""
    return click.option("--out", "out", cls=Aliased, aliases=aliases, type=StoreRoot(), required=required,
                        metavar="ROOT", help=help)


def _source_help(option: Option, owners: list[str]) -> str:
    notes = [f"env {option.env}"] if option.env else []
    if option.default is not None and not option.is_switch:
        notes.append(f"default: {option.default:g}" if isinstance(option.default, float) else
                     f"default: {option.default}")
    elif option.is_switch:
        notes.append(f"default: {'on' if option.default else 'off'}")
    return f"{'/'.join(owners)}: {option.help}" + (f" [{'; '.join(notes)}]" if notes else "")


def source_options(f: Callable) -> Callable:
    """Add one flag per option that any source declares (same name, same declaration), values default None."""
    merged: dict[str, tuple[Option, list[str]]] = {}
    for source in SOURCES.values():
        for option in source.options:
            known, owners = merged.setdefault(option.name, (option, []))
            if known != option:
                raise TypeError(f"sources declare option {option.name} differently")  # a programming error
            owners.append(source.name)
    for option, owners in reversed(merged.values()):
        help = _source_help(option, owners)
        if option.is_switch:
            flags = f"{option.flag}/--no-{option.flag[2:]}"
            f = click.option(flags, option.name, default=None, help=help)(f)
        else:
            f = click.option(option.flag, option.name, type=option.type, default=None, help=help,
                             metavar=option.name.upper() if isinstance(option.type, click.types.StringParamType)
                             else None)(f)
    return f


def source_option_names() -> set[str]:
    """The names of every source option (the keyword arguments :func:`source_options` adds)."""
    return {option.name for source in SOURCES.values() for option in source.options}
