"""The one error the user is meant to read."""


class InputError(ValueError):
    """A problem with what the user handed in; the message says what and how to fix it."""
