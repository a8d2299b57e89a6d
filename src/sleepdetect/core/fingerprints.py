"""What a derived file came from, in a few bytes, so that its readers can refuse it once the
source has changed: the sha256 of whole files (bundles' weights), and a cheap fingerprint of
the large source files (a competition series file is about 1 GB).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SAMPLE_BYTES = 1 << 20  # a fingerprint reads at most three samples of this size


def file_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of the whole file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_fingerprint(path: str | os.PathLike[str]) -> str:
    """sha256 of the size and of the first, middle and last MiB (the whole file when it is
    smaller than three). A parquet file's footer, in its last bytes, holds the row count and
    the offsets and statistics of every row group, so a file rewritten with other rows changes
    it even where the samples miss the changed rows."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= 3 * SAMPLE_BYTES:
            digest.update(f.read())
        else:
            for offset in (0, size // 2, size - SAMPLE_BYTES):
                f.seek(offset)
                digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()


def source_record(path: str | os.PathLike[str]) -> dict[str, str | int]:
    """Where a derived file came from: resolved path, size, modification time, fingerprint."""
    path = Path(path).resolve()
    stat = path.stat()
    return {
        "path": str(path),
        "size": stat.st_size,
        "mtime": int(stat.st_mtime),
        "fingerprint": content_fingerprint(path),
    }


def source_change(recorded: dict, path: str | os.PathLike[str]) -> str | None:
    """None when `path` holds the content `recorded` describes (it may have moved or been
    touched); else what differs, for an error message."""
    path = Path(path)
    if not path.is_file():
        return f"{path} does not exist (the data came from {recorded['path']})"
    now = source_record(path)
    if now["size"] != recorded["size"] or now["fingerprint"] != recorded["fingerprint"]:
        return (
            f"{now['path']} ({now['size']} bytes) is not the file the data came from "
            f"({recorded['path']}, {recorded['size']} bytes, fingerprint "
            f"{recorded['fingerprint'][:12]}, now {now['fingerprint'][:12]})"
        )
    return None
