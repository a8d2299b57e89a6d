"""`python -m sleepdetect convert FILE... --out DIR`: device files -> competition-schema series.

Each recording becomes `DIR/<series_id>.parquet` (series_id, step, timestamp, anglez, enmo,
not_worn; the series_id is the file name without its extension) and `DIR/<series_id>.json`,
the record of what it came from: the source file's fingerprint, the options, what was found
(gaps, clipping, calibration, non-wear) and CONVERT_VERSION. A file whose record still matches
is not converted again. A bad file is named and skipped; the others go on.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sleepdetect.core.constants import STEPS_PER_HOUR
from sleepdetect.core.errors import InputError
from sleepdetect.core.files import atomic_path
from sleepdetect.core.fingerprints import source_change, source_record
from sleepdetect.core.records import change, read_record, write_record
from sleepdetect.devices.calibrate import calibrate
from sleepdetect.devices.epochs import to_epochs
from sleepdetect.devices.read import DEVICE_FORMATS, read_raw

CONVERT_VERSION = 1  # raise when the step definitions change: converted files are made again


@dataclass(frozen=True)
class Options:
    """What the user may have to say about a file that does not say it itself."""

    sample_rate: float | None = None  # Hz
    timezone: str | None = None  # IANA name: local time follows daylight saving
    utc_offset: str | None = None  # the device clock's offset, when the file lacks it
    start: str | None = None  # a CSV without a time column: its first sample's time
    calibrate: bool = True


@dataclass
class Converted:
    """One recording converted (or found converted already)."""

    source: Path
    series_id: str
    parquet: Path
    record: dict
    skipped: bool = False
    notes: list[str] = field(default_factory=list)


def series_id_of(path: str | os.PathLike[str]) -> str:
    """The file name without its extension, in letters, digits, '-', '_' and '.'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem) or "recording"


def recordings(inputs: list[str]) -> list[Path]:
    """The files named, with the readable files of each folder named (sorted); an InputError
    for a missing path or two recordings of one series_id."""
    known = tuple(DEVICE_FORMATS.names())
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in known)
            if not found:
                raise InputError(f"{path}: no recordings ({', '.join(known)}) in this folder")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    seen: dict[str, Path] = {}
    for f in files:
        sid = series_id_of(f)
        if sid in seen and seen[sid] != f:
            raise InputError(
                f"{seen[sid]} and {f} would both be series {sid!r}; rename one of them"
            )
        seen[sid] = f
    return files


def shard(files: list[Path], spec: str | None) -> list[Path]:
    """`--shard i/n`: every n-th file from the i-th (1-based), so n jobs share the files."""
    if not spec:
        return files
    m = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise InputError(f"--shard {spec!r}: write i/n with 1 <= i <= n, e.g. --shard 3/10")
    i, n = int(m.group(1)), int(m.group(2))
    return files[i - 1 :: n]


def convert_file(path: Path, out_dir: Path, options: Options) -> Converted:
    """Convert one recording into `out_dir`, unless its record shows it done from this file."""
    sid = series_id_of(path)
    parquet, record_path = out_dir / f"{sid}.parquet", out_dir / f"{sid}.json"
    wanted = {"version": CONVERT_VERSION, "options": asdict(options)}
    old = read_record(record_path)
    if (
        old is not None
        and parquet.is_file()
        and change({k: old.get(k) for k in wanted}, wanted) is None
        and source_change(old["source"], path) is None
    ):
        return Converted(path, sid, parquet, old, skipped=True, notes=old.get("notes", []))
    source = source_record(path)
    raw = read_raw(path, options.sample_rate, options.utc_offset, options.start)
    cal = calibrate(raw) if options.calibrate else {"applied": False, "why": "--no-calibrate"}
    epochs = to_epochs(raw, sid, options.timezone)
    notes = epochs.notes + ([] if cal["applied"] else [f"not calibrated: {cal['why']}"])
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path.unlink(missing_ok=True)  # no record: no finished conversion of this file
    with atomic_path(parquet) as tmp:
        epochs.frame.write_parquet(tmp)
    record = {
        **wanted,
        "source": source,
        "format": raw.format,
        "utc_offset_s": raw.offset_s,
        "calibration": cal,
        "stats": epochs.stats,
        "notes": notes,
    }
    write_record(record_path, record)
    return Converted(path, sid, parquet, record, notes=notes)


def convert_command(
    inputs: list[str], out: str, options: Options, shard_spec: str | None = None
) -> tuple[int, list[Converted]]:
    """The `convert` command: every file (a bad one is named at the end); the exit status (1
    if any failed) and the recordings converted."""
    files = shard(recordings(inputs), shard_spec)
    failed, converted = [], []
    for path in files:
        try:
            done = convert_file(path, Path(out), options)
        except InputError as e:
            failed.append(str(e))
            print(f"FAILED {path}: see the end")
            continue
        converted.append(done)
        s = done.record["stats"]
        state = "unchanged, kept" if done.skipped else "converted"
        off = s["not_worn_steps"] / STEPS_PER_HOUR
        print(
            f"{done.parquet}: {state}; {s['days']} days, {off:.1f} h not worn, "
            f"{done.record['format']} at {s['sample_rate']:g} Hz"
        )
        for note in done.notes:
            print(f"  note: {note}")
    return failures(failed, len(files)), converted


def failures(errors: list[str], files: int) -> int:
    """Print a batch's failures after its results; the exit status: 1 if any, else 0."""
    if errors:
        print(f"\n{len(errors)} of {files} files failed:")
        for line in errors:
            print(f"  {line}")
    return 1 if errors else 0
