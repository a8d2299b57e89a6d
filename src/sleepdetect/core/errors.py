"""The error type for bad input files and bad pipeline state (`InputError`).

`python -m sleepdetect` (cli.py) prints three error types as one `error: ...` line and exit
status 2, without a traceback, because each is the user's to fix and its message says how:

- `InputError` (here): a file the user gave, or one an earlier stage should have written, is
  missing, malformed or stale;
- `config.ConfigError`: a params file or `key.sub=value` override does not fit the config;
- `registry.UnknownComponentError`: a name (model, feature, decoder, ...) nothing is registered
  under; the message lists the valid names.

Any other exception is a bug (or a failure outside the user's input) and keeps its traceback.
"""


class InputError(ValueError):
    """A file the user gave is not usable. The message names the file, the column or series,
    the problem and the fix."""
