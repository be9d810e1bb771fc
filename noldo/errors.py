"""The project's one user-error type: an error the user can fix, shown by every CLI as one line, exit 1."""


class NoldoError(ValueError):
    """A problem with the user's input or data; the message says what to do about it.

    It is a :class:`ValueError` (a value the user gave is wrong), so code that expects one keeps
    working; the command lines catch this type only, never a bare ``ValueError``.
    """
