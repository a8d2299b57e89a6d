"""Freshness records: what a derived file was made from, written beside it and checked when it
is read, so an output of stale or mismatched inputs is an error (or a rerun), never a silent
wrong result. Every stage writes its record with `write_record` and checks it with
`check_record` (or `change`, for a record read from elsewhere).

A record is a JSON object of inputs: config values, file hashes (`fingerprints.file_hash`),
source fingerprints. `change` compares the stored one with the inputs as they are now and
names the first input that differs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sleepdetect.core.files import write_json


def write_record(path: str | os.PathLike[str], inputs: dict[str, Any]) -> Path:
    """Store `inputs` at `path` (JSON, atomically)."""
    return write_json(path, _plain(inputs))


def check_record(path: str | os.PathLike[str], inputs: dict[str, Any]) -> str | None:
    """None when `path` records exactly `inputs`; else which input differs (see `change`)."""
    return change(read_record(path), inputs)


def read_record(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The inputs stored at `path`, or None when there is no readable record."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):  # missing, or cut short by a killed writer
        return None
    return record if isinstance(record, dict) else None


def change(
    recorded: dict[str, Any] | None, current: dict[str, Any], prefix: str = ""
) -> str | None:
    """None when `recorded` equals `current`; else which input differs, e.g. 'no record',
    'init_from changed', 'folds.fold1 is new' (nested objects are named by dotted keys)."""
    if recorded is None:
        return "no record"
    if not prefix:  # compare as stored: tuples as lists, paths as text
        recorded, current = _plain(recorded), _plain(current)
    for key in sorted(set(recorded) | set(current), key=str):
        name = f"{prefix}{key}"
        if key not in recorded:
            return f"{name} is new"
        if key not in current:
            return f"{name} is gone"
        old, new = recorded[key], current[key]
        if isinstance(old, dict) and isinstance(new, dict):
            inner = change(old, new, f"{name}.")
            if inner:
                return inner
        elif old != new:
            return f"{name} changed"
    return None


def _plain(inputs: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(inputs, default=str))
