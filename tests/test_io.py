"""Readers: every bad input gets a clear error or a documented, tested repair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sleepdetect.core.errors import InputError
from sleepdetect.data.io import (
    SERIES_SCHEMA,
    DataRepairWarning,
    iter_series,
    parse_timestamps,
    read_events,
    read_series,
    scan_series,
)


def make_series(
    series_id: str = "s1", n: int = 100, start: str = "2018-08-14T15:30:00"
) -> pl.DataFrame:
    """A well-formed series in the official schema, 5 s a step, UTC offset -0400."""
    base = np.datetime64(start) + np.arange(n) * np.timedelta64(5, "s")
    ts = [str(x).replace(" ", "T") + "-0400" for x in base.astype("datetime64[s]")]
    rng = np.random.default_rng(0)
    return pl.DataFrame(
        {
            "series_id": [series_id] * n,
            "step": np.arange(n, dtype=np.uint32),
            "timestamp": ts,
            "anglez": rng.uniform(-80, 80, n).astype(np.float32),
            "enmo": rng.uniform(0, 0.2, n).astype(np.float32),
        },
        schema=SERIES_SCHEMA,
    )


def write(tmp_path: Path, df: pl.DataFrame, name: str = "train_series.parquet") -> Path:
    path = tmp_path / name
    df.write_parquet(path)
    return path


def test_reads_well_formed_series_in_official_schema(tmp_path):
    path = write(tmp_path, pl.concat([make_series("a", 50), make_series("b", 70)]))
    frames = list(iter_series(path, batch_rows=16))  # series cut across batches
    assert [f["series_id"][0] for f in frames] == ["a", "b"]
    assert [len(f) for f in frames] == [50, 70]
    for name, dtype in SERIES_SCHEMA.items():
        assert frames[0].schema[name] == dtype
    assert frames[0]["seconds_of_day"][:2].to_list() == [
        15 * 3600 + 30 * 60,
        15 * 3600 + 30 * 60 + 5,
    ]


def test_series_ids_selects_series(tmp_path):
    path = write(tmp_path, pl.concat([make_series("a", 20), make_series("b", 30)]))
    assert read_series(path, ["b"])["series_id"].unique().to_list() == ["b"]
    with pytest.raises(InputError, match="none of the series"):
        read_series(path, ["zzz"])


def test_real_sample_reads_clean(real_data_dir):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DataRepairWarning)
        df = read_series(real_data_dir / "train_series.parquet")
        test = read_series(real_data_dir / "test_series.parquet")
    assert len(df) == 204840 and df["series_id"].n_unique() == 1
    assert test["series_id"].n_unique() == 3
    events = read_events(real_data_dir / "train_events.csv", {"038441c925bb": len(df)})
    assert events["step"].null_count() == 4  # nights 5 and 9 have no events
    assert scan_series(real_data_dir / "train_series.parquet").select(
        pl.len()
    ).collect().item() == len(df)


# ---------------------------------------------------------------- bad series files


def test_missing_column(tmp_path):
    path = write(tmp_path, make_series().drop("enmo"))
    with pytest.raises(InputError, match=r"column 'enmo' is missing"):
        list(iter_series(path))


def test_string_anglez_is_a_dtype_error(tmp_path):
    path = write(tmp_path, make_series().with_columns(pl.col("anglez").cast(pl.String)))
    with pytest.raises(InputError, match=r"column 'anglez' has dtype String, expected Float32"):
        list(iter_series(path))


@pytest.mark.parametrize("column", ["anglez", "enmo"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None])
def test_non_finite_values_are_interpolated(tmp_path, column, bad):
    df = make_series(n=10)
    values = df[column].to_list()
    values[4] = bad
    df = df.with_columns(pl.Series(column, values, pl.Float32))
    with pytest.warns(DataRepairWarning, match="linearly interpolated"):
        out = read_series(write(tmp_path, df))
    expected = (values[3] + values[5]) / 2
    assert out[column][4] == pytest.approx(expected, rel=1e-6)
    assert out[column].is_finite().all()


def test_all_non_finite_is_an_error(tmp_path):
    df = make_series(n=5).with_columns(pl.lit(float("nan"), pl.Float32).alias("enmo"))
    with pytest.raises(InputError, match="no finite value"):
        read_series(write(tmp_path, df))


def test_anglez_out_of_range(tmp_path):
    df = make_series(n=10).with_columns(
        pl.when(pl.col("step") == 3).then(123.0).otherwise(pl.col("anglez")).alias("anglez")
    )
    with pytest.raises(InputError, match=r"anglez 123.0 at step 3 is outside -90..90"):
        read_series(write(tmp_path, df))


def test_negative_enmo_is_clipped(tmp_path):
    df = make_series(n=10).with_columns(
        pl.when(pl.col("step") == 2).then(-0.01).otherwise(pl.col("enmo")).alias("enmo")
    )
    with pytest.warns(DataRepairWarning, match="negative enmo"):
        out = read_series(write(tmp_path, df))
    assert out["enmo"][2] == 0.0 and out["enmo"].min() >= 0


def test_unsorted_steps_are_sorted(tmp_path):
    df = make_series(n=20)
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=3)
    with pytest.warns(DataRepairWarning, match="sorted by step"):
        out = read_series(write(tmp_path, shuffled))
    assert out.drop("seconds_of_day").equals(df)


def test_duplicated_step(tmp_path):
    df = make_series(n=10)
    df = pl.concat([df[:5], df[4:]])
    with pytest.raises(InputError, match="step 4 appears more than once"):
        read_series(write(tmp_path, df))


def test_gap_in_steps(tmp_path):
    df = make_series(n=10).filter(pl.col("step") != 6)
    with pytest.raises(InputError, match="steps jump from 5 to 7"):
        read_series(write(tmp_path, df))


def test_steps_not_from_zero(tmp_path):
    df = make_series(n=10)[3:]
    with pytest.raises(InputError, match="steps start at 3, not 0"):
        read_series(write(tmp_path, df))


def test_series_not_grouped(tmp_path):
    a, b = make_series("a", 10), make_series("b", 10)
    path = write(tmp_path, pl.concat([a[:5], b, a[5:]]))
    with pytest.raises(InputError, match="grouped by series_id"):
        list(iter_series(path))


@pytest.mark.parametrize(
    "bad",
    [
        "2018-08-14 15:30:25-0400",  # space instead of T
        "2018-08-14T15:30:25Z",  # other offset style: mixed formats
        "2018-08-14T15:30:25",  # no offset
        "2018-13-14T15:30:25-0400",  # month 13
        "garbage",
    ],
)
def test_malformed_or_mixed_timestamps(tmp_path, bad):
    df = make_series(n=10)
    ts = df["timestamp"].to_list()
    ts[5] = bad
    df = df.with_columns(pl.Series("timestamp", ts))
    with pytest.raises(InputError, match=r"timestamp .* at step 5 is not of the form"):
        read_series(write(tmp_path, df))


def test_timestamps_must_advance_5s(tmp_path):
    df = make_series(n=10)
    ts = df["timestamp"].to_list()
    ts[6] = ts[6].replace("-0400", "-0300")
    df = df.with_columns(pl.Series("timestamp", ts))
    with pytest.raises(InputError, match="advance exactly 5 s per step"):
        read_series(write(tmp_path, df))


def test_daylight_saving_change_is_legal(tmp_path):
    # 2018-11-04 01:59:55 EDT (-0400) is followed by 01:00:00 EST (-0500): 5 s later in UTC.
    df = make_series(n=4, start="2018-11-04T01:59:50")
    ts = [
        "2018-11-04T01:59:50-0400",
        "2018-11-04T01:59:55-0400",
        "2018-11-04T01:00:00-0500",
        "2018-11-04T01:00:05-0500",
    ]
    df = df.with_columns(pl.Series("timestamp", ts))
    out = read_series(write(tmp_path, df))
    assert out["seconds_of_day"].to_list() == [7190, 7195, 3600, 3605]


def test_empty_file(tmp_path):
    path = write(tmp_path, make_series(n=0))
    with pytest.raises(InputError, match="holds no rows"):
        list(iter_series(path))


def test_not_parquet(tmp_path):
    path = tmp_path / "train_series.parquet"
    path.write_text("series_id,step\nabc,0\n")
    with pytest.raises(InputError, match="not a parquet file"):
        list(iter_series(path))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        list(iter_series(tmp_path / "nope.parquet"))


def test_parse_timestamps_matches_polars():
    ts = pl.Series(
        ["2018-11-04T01:59:55-0400", "2024-02-29T23:59:59+0530", "1999-12-31T00:00:00+0000"]
    )
    utc, local = parse_timestamps(ts)
    expected = ts.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%z").dt.epoch("s")
    assert utc.tolist() == expected.to_list()
    assert local.tolist() == [7195, 86399, 0]


# ---------------------------------------------------------------- events


EVENTS_HEADER = "series_id,night,event,step,timestamp\n"


def write_events(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "train_events.csv"
    path.write_text(EVENTS_HEADER + body)
    return path


def test_night_without_events_is_legal(tmp_path):
    path = write_events(
        tmp_path, "a,1,onset,,\na,1,wakeup,,\na,2,onset,12,2018-08-14T15:31:00-0400\n"
    )
    events = read_events(path, {"a": 100})
    assert events["step"].to_list() == [None, None, 12]
    assert events.schema["step"] == pl.Int64


def test_float_steps_are_read_as_integers(tmp_path):
    path = write_events(tmp_path, "a,1,onset,4992.0,\na,1,wakeup,5000,\n")
    assert read_events(path)["step"].to_list() == [4992, 5000]


def test_fractional_step_is_an_error(tmp_path):
    path = write_events(tmp_path, "a,1,onset,4992.5,\n")
    with pytest.raises(InputError, match="not a whole number"):
        read_events(path)


def test_non_numeric_step(tmp_path):
    path = write_events(tmp_path, "a,1,onset,abc,\n")
    with pytest.raises(
        InputError, match="'step' must be numeric, but line 2 holds 'abc'; write a"
    ) as info:
        read_events(path)
    assert str(path) in str(info.value)


def test_unknown_event_name(tmp_path):
    path = write_events(tmp_path, "a,1,nap,10,\n")
    with pytest.raises(
        InputError, match="unknown event name 'nap' .* valid names: onset, wakeup"
    ) as info:
        read_events(path)
    assert str(path) in str(info.value)


def test_two_onsets_in_one_night(tmp_path):
    path = write_events(tmp_path, "a,1,onset,10,\na,1,onset,20,\n")
    with pytest.raises(InputError, match="night 1 has 2 onset events"):
        read_events(path)


def test_events_of_absent_series_are_dropped(tmp_path):
    path = write_events(tmp_path, "a,1,onset,10,\nghost,1,onset,10,\n")
    with pytest.warns(DataRepairWarning, match="1 series not in the series file"):
        events = read_events(path, {"a": 100})
    assert events["series_id"].to_list() == ["a"]


def test_event_beyond_series_end(tmp_path):
    path = write_events(tmp_path, "a,1,onset,100,\n")
    with pytest.raises(InputError, match=r"step 100 lies outside the series \(steps 0..99\)"):
        read_events(path, {"a": 100})


def test_events_missing_column(tmp_path):
    path = tmp_path / "train_events.csv"
    path.write_text("series_id,night,step\na,1,10\n")
    with pytest.raises(InputError, match="column 'event' is missing"):
        read_events(path)


def test_events_empty_file(tmp_path):
    path = tmp_path / "train_events.csv"
    path.write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_events(path)
