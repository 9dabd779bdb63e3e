"""The one error type users see for bad input: the CLI prints it on one line and exits 2."""


class InputError(Exception):
    """Bad input from a file, key or flag. The message names it, the bad value and what is allowed."""
