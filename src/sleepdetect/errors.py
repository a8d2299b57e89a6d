"""The one error type for bad input files, so the CLI can print it without a traceback."""


class InputError(ValueError):
    """A file the user gave is not usable. The message names the file, the column or series,
    the problem and the fix."""
