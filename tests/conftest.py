"""Shared fixtures: tiny synthetic series, and the real sample when ../shared is present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = Path(os.environ.get("SLEEPDETECT_REAL_DATA", REPO.parent / "shared" / "data" / "cmi"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real competition sample (one series, 10 labelled nights); skip where it is absent."""
    if not (REAL_DATA / "train_series.parquet").is_file():
        pytest.skip(
            f"real sample not found at {REAL_DATA}: it lives in ../shared/data/cmi beside the "
            "repository (or set SLEEPDETECT_REAL_DATA)"
        )
    return REAL_DATA


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three small synthetic series in the official schema, made once per test session."""
    from sleepdetect.data.synthetic import write_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(out, n_series=3, days=3.0, seed=1)
    return out
