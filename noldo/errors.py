"""The project's exception: an error the user can fix, shown by the CLI as one line."""


class NoldoError(Exception):
    """A problem with the user's input or data; the message says what to do about it."""
