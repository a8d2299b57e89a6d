"""One writer at a time per folder: `run` and `package` hold `<folder>/.lock` while they write.

The lock is an `fcntl.flock` on the open `.lock` file, so the OS drops it when its process
ends, a `kill -9` included. The file records who holds it (pid, host, start time, command
line): a second process is refused at once with those details, and a file left by a killed
process is taken over with a warning. Within one process the lock is re-entrant (a sweep, or
`package` reading an experiment it also locks, never waits on itself). Processes started while
it is held (papermill's kernel, trainer.fold_workers) do not inherit it and never take it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sleepdetect.core.errors import InputError
from sleepdetect.core.files import pid_alive

LOCK_NAME = ".lock"


@dataclass
class _Held:
    fd: int
    path: Path
    created: list[Path]  # the folders taking the lock made, deepest first
    depth: int = 1


_held: dict[Path, _Held] = {}
_guard = threading.Lock()
# A forked child shares its parent's locks but does not own them: it must neither count them
# as its own (and write unlocked) nor remove them.
os.register_at_fork(after_in_child=_held.clear)


@contextmanager
def experiment_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive lock of `folder` (created if missing) for the block; yields the lock
    file. Raises `InputError` at once, naming the holder, when another process holds it."""
    folder = Path(folder).resolve()
    with _guard:
        held = _held.get(folder)
        if held is not None:
            held.depth += 1
        else:
            held = _held[folder] = _acquire(folder)
    try:
        yield held.path
    finally:
        with _guard:
            held.depth -= 1
            if held.depth == 0 and _held.get(folder) is held:  # not in a forked child
                del _held[folder]
                _release(held)


def holder(folder: str | os.PathLike[str]) -> dict | None:
    """What the lock file of `folder` records (pid, host, started, command), if anything."""
    try:
        return _parse((Path(folder) / LOCK_NAME).read_bytes())
    except OSError:
        return None


def _acquire(folder: Path) -> _Held:
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # a holder that made the folder removed it on release
            folder.mkdir(parents=True, exist_ok=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read(fd)
            os.close(fd)
            _remove_empty(created)
            raise InputError(_busy(folder, path, info)) from None
        except OSError as e:  # no flock on this filesystem: fall back to the recorded pid
            info = _read(fd)
            if info and _alive(info):
                os.close(fd)
                _remove_empty(created)
                raise InputError(_busy(folder, path, info)) from e
        # The holder we raced with may have removed the file after we opened it: lock anew.
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    previous = _read(fd)
    if previous:
        gone = "no longer exists" if not _alive(previous) else "no longer holds it"
        print(
            f"warning: {folder}: took over the stale lock {LOCK_NAME} of process "
            f"{_who(previous)}, which {gone} (it was killed or crashed)",
            file=sys.stderr,
            flush=True,
        )
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv)),
    }
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError as e:  # a full disk: the lock holds all the same, without its details
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            os.close(fd)
            raise
    return _Held(fd, path, created)


def _release(held: _Held) -> None:
    try:
        if os.path.samestat(os.fstat(held.fd), os.stat(held.path)):
            held.path.unlink()  # while still locked, so no one else's file is removed
    except OSError:
        pass
    finally:
        os.close(held.fd)
    _remove_empty(held.created)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders taking the lock made, if still empty: a command that wrote nothing
    (refused, or failed on its input) leaves no trace."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _read(fd: int) -> dict | None:
    try:
        return _parse(os.pread(fd, 1 << 16, 0))
    except OSError:
        return None


def _parse(data: bytes) -> dict | None:
    try:
        info = json.loads(data)
    except ValueError:
        return None
    return info if isinstance(info, dict) and "pid" in info else None


def _alive(info: dict) -> bool:
    """Whether the recorded process may still run (always assumed on another host)."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        return pid_alive(int(info["pid"]))
    except (ValueError, TypeError):
        return True


def _who(info: dict) -> str:
    host = info.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"{info['pid']}{where} ({info.get('command', '?')}, started {info.get('started', '?')})"


def _busy(folder: Path, path: Path, info: dict | None) -> str:
    if not info:
        return (
            f"{folder} is being written by another process (it has just taken {path}); "
            "wait for it or stop it"
        )
    if not _alive(info):
        return (
            f"{folder} is locked by a process started by process {_who(info)}, which no "
            f"longer exists: stop the processes still holding {path} (`fuser -v {path}` "
            "lists them), then run the same command again"
        )
    return f"{folder} is being written by process {_who(info)}; wait for it or stop it"
