"""The project's one user-error type (an error the user can fix; every CLI shows it as one line, exit 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


class NoldoError(ValueError):
    """A problem with the user's input or data; the message says what to do about it.

    It is a :class:`ValueError` (a value the user gave is wrong), so code that expects one keeps
    working; the command lines catch this type only, never a bare ``ValueError``.
    """


def choose(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``, or a NoldoError listing the choices (``unknown task 'x'; choose one of dw, osm``)."""
    try:
        return table[name]
    except KeyError:
        raise NoldoError(f"unknown {what} {name!r}; choose one of {', '.join(table)}") from None
