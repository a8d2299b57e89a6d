"""Atomic writes: every file the pipeline writes appears whole or not at all.

A write that fails, a full disk included, removes its temporary file and leaves the previous
version of the file as it was; the next write of a file removes the temporary file a writer
killed outright (SIGKILL) left. A full disk (or an exceeded quota) is a `DiskFullError`, an
`InputError` that names the file, so `python -m sleepdetect` prints it as one line.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sleepdetect.core.errors import InputError

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries that wrap the OS error (polars, torch's C++ writer) still spell it.
_FULL_TEXTS = ("no space left on device", "disk quota exceeded", "os error 28", "os error 122")
_NEARLY_FULL = 1 << 20  # bytes: below this free, a failed write is put down to the full disk


class DiskFullError(InputError):
    """A write failed for lack of space (ENOSPC) or quota (EDQUOT); nothing was replaced."""


def is_disk_full(exc: BaseException, folder: str | os.PathLike[str] | None = None) -> bool:
    """Whether `exc` (or an exception it was raised from) is a full disk or exceeded quota.

    Libraries that hide the errno are recognised by their message, and, when `folder` is
    given, any failure while its filesystem has (nearly) no space left counts as one.
    """
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DiskFullError):
            return True
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if any(t in str(e).lower() for t in _FULL_TEXTS):
            return True
        e = e.__cause__ or e.__context__
    if folder is not None:
        try:
            return shutil.disk_usage(folder).free < _NEARLY_FULL
        except OSError:
            return False
    return False


def disk_full_error(path: str | os.PathLike[str], existed: bool) -> DiskFullError:
    """The error for a write of `path` that ran out of space; `existed`: a previous version
    was there (and is kept)."""
    path = Path(path)
    kept = (
        f"the previous {path.name} is intact" if existed else f"nothing was written to {path.name}"
    )
    return DiskFullError(
        f"{path}: no space left on the device (disk full or quota exceeded) while writing it; "
        f"{kept} and the partial copy was removed. Free space under {path.parent} "
        f"(`df -h {path.parent}`) and run the same command again"
    )


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    An interrupted run therefore never leaves a half-written file that a later run trusts. A
    block that fails for lack of space raises `DiskFullError` naming `path`; whatever the
    failure, the temporary file is removed and the previous `path` is untouched.
    """
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(path, existed) from e
        raise
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    _remove_stale_temporaries(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except DiskFullError:
        raise  # a nested atomic_path already named its file
    except Exception as e:
        if is_disk_full(e, path.parent):
            raise disk_full_error(path, existed) from e
        raise
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # never hide the error that brought us here


def _remove_stale_temporaries(path: Path) -> None:
    """Remove the temporary siblings of `path` (`.<name>.<pid>.tmp`) whose writer no longer
    exists: one killed outright (SIGKILL) never reached the cleanup of `atomic_path`."""
    prefix = f".{path.name}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) : -len(".tmp")]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue
        try:
            (path.parent / name).unlink()
        except OSError:
            pass


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2) + "\n")


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
    return Path(path)
