"""The synthetic generator: official schema, valid labels, realistic statistics, determinism."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sleepdetect.data import synthetic as syn

SERIES_FILES = ("train_series.parquet", "test_series.parquet")
EXPECTED_ARROW = pa.schema(
    [
        ("series_id", pa.large_string()),
        ("step", pa.uint32()),
        ("timestamp", pa.large_string()),
        ("anglez", pa.float32()),
        ("enmo", pa.float32()),
    ]
)
# parquet column: (physical type, logical type) as in the official files
EXPECTED_PARQUET = {
    "series_id": ("BYTE_ARRAY", "String"),
    "step": ("INT32", "Int(bitWidth=32, isSigned=false)"),
    "timestamp": ("BYTE_ARRAY", "String"),
    "anglez": ("FLOAT", "None"),
    "enmo": ("FLOAT", "None"),
}
EVENTS_SCHEMA = {
    "series_id": pl.String,
    "night": pl.Int64,
    "event": pl.String,
    "step": pl.Int64,
    "timestamp": pl.String,
}

# Real label statistics of all 277 training series (bench/fit_synthetic_stats.py), and the
# tolerance a generated set of 300 series must meet. The sampling noise of such a set is about
# 0.08 h for a mean and 0.03 for the share of empty nights.
REAL = {
    "onset_h_mean": (22.67, 0.3),  # h after midnight of the evening (22.67 = 22:40)
    "wakeup_h_mean": (7.32, 0.3),
    "sleep_h_mean": (8.65, 0.3),
    "onset_h_sd": (1.89, 0.3),
    "wakeup_h_sd": (1.67, 0.3),
    "sleep_h_sd": (1.70, 0.3),
    "sleep_h_q05": (5.53, 0.5),
    "sleep_h_q95": (10.98, 0.6),
    "share_nights_empty": (0.339, 0.08),
    "nights_mean": (26.17, 2.5),
}


def _series(folder: Path, name: str = "train_series.parquet") -> pl.DataFrame:
    return pl.read_parquet(folder / name)


def _events(folder: Path) -> pl.DataFrame:
    return pl.read_csv(folder / "train_events.csv", schema_overrides=EVENTS_SCHEMA)


def _parquet_columns(path: Path) -> dict[str, tuple[str, str]]:
    schema = pq.ParquetFile(path).schema
    return {
        c.name: (c.physical_type, str(c.logical_type)) for c in (schema.column(i) for i in range(5))
    }


def _label_stats(events: pl.DataFrame) -> dict[str, float]:
    """The statistics of REAL, measured the same way as bench/fit_synthetic_stats.py."""
    per_night = events.group_by("series_id", "night").agg(n=pl.col("step").is_not_null().sum())
    w = (
        events.drop_nulls("step")
        .with_columns(local=pl.col("timestamp").str.slice(0, 19).str.to_datetime())
        .pivot(on="event", index=["series_id", "night"], values=["step", "local"])
        .drop_nulls()
    )

    def clock(col: str, lo: float) -> np.ndarray:
        t = w[col]
        h = (t.dt.hour() + t.dt.minute() / 60).to_numpy()
        return (h - lo) % 24 + lo

    onset, wakeup = clock("local_onset", 12.0), clock("local_wakeup", -6.0)
    sleep = ((w["step_wakeup"] - w["step_onset"]) * 5 / 3600).to_numpy()
    return {
        "onset_h_mean": onset.mean(),
        "wakeup_h_mean": wakeup.mean(),
        "sleep_h_mean": sleep.mean(),
        "onset_h_sd": onset.std(),
        "wakeup_h_sd": wakeup.std(),
        "sleep_h_sd": sleep.std(),
        "sleep_h_q05": np.quantile(sleep, 0.05),
        "sleep_h_q95": np.quantile(sleep, 0.95),
        "share_nights_empty": float((per_night["n"] == 0).mean()),
        "nights_mean": events.group_by("series_id").agg(pl.col("night").max())["night"].mean(),
    }


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize("name", SERIES_FILES)
def test_series_files_have_the_official_schema(synthetic_dir: Path, name: str) -> None:
    path = synthetic_dir / name
    assert pq.read_schema(path).equals(EXPECTED_ARROW)
    assert _parquet_columns(path) == EXPECTED_PARQUET
    meta = pq.ParquetFile(path).metadata
    assert all(
        meta.row_group(g).column(c).compression == "ZSTD"
        for g in range(meta.num_row_groups)
        for c in range(5)
    )


@pytest.mark.parametrize("name", SERIES_FILES)
def test_series_schema_equals_the_real_files(
    synthetic_dir: Path, real_data_dir: Path, name: str
) -> None:
    assert pq.read_schema(synthetic_dir / name).equals(pq.read_schema(real_data_dir / name))
    assert _parquet_columns(synthetic_dir / name) == _parquet_columns(real_data_dir / name)


def test_events_file_matches_the_real_layout(synthetic_dir: Path, real_data_dir: Path) -> None:
    ours = (synthetic_dir / "train_events.csv").read_text()
    real = (real_data_dir / "train_events.csv").read_text()
    assert ours.splitlines()[0] == real.splitlines()[0] == "series_id,night,event,step,timestamp"
    assert dict(pl.read_csv(synthetic_dir / "train_events.csv").schema) == dict(
        pl.read_csv(real_data_dir / "train_events.csv").schema
    )
    assert "\r" not in ours and ours.endswith("\n")


def test_events_have_an_onset_and_a_wakeup_row_per_night(synthetic_dir: Path) -> None:
    text = (synthetic_dir / "train_events.csv").read_text().splitlines()[1:]
    rows = [line.split(",") for line in text]
    assert all(len(r) == 5 for r in rows)
    empty = [r for r in rows if r[3] == ""]
    assert empty, "the fixture should hold a night without events"
    assert all(r[4] == "" for r in empty)  # empty step <=> empty timestamp
    assert all(r[4] != "" for r in rows if r[3] != "")

    events = _events(synthetic_dir)
    ids = _series(synthetic_dir)["series_id"].unique(maintain_order=True).to_list()
    assert events["series_id"].unique(maintain_order=True).to_list() == ids  # same order
    for _, g in events.group_by("series_id", maintain_order=True):
        nights = g["night"].to_numpy()
        assert np.array_equal(nights, np.repeat(np.arange(1, len(g) // 2 + 1), 2))
        assert g["event"].to_list() == ["onset", "wakeup"] * (len(g) // 2)


# ---------------------------------------------------------------- steps, timestamps, values


def test_steps_consecutive_and_timestamps_advance_5s(synthetic_dir: Path) -> None:
    for name in SERIES_FILES:
        df = _series(synthetic_dir, name)
        ids = df["series_id"].to_list()
        runs = [ids[0]] + [b for a, b in zip(ids, ids[1:], strict=False) if a != b]
        assert runs == sorted(set(ids)), f"{name}: series not in contiguous blocks sorted by id"
        for _, g in df.group_by("series_id", maintain_order=True):
            steps = g["step"].to_numpy()
            assert np.array_equal(steps, np.arange(len(g)))
            utc = g["timestamp"].str.to_datetime(syn.TIMESTAMP_FORMAT).dt.epoch("s").to_numpy()
            assert np.all(np.diff(utc) == 5)
            first = datetime.strptime(g["timestamp"][0], syn.TIMESTAMP_FORMAT)
            assert first.minute % 15 == 0 and first.second == 0  # as the real series start
            assert 8 <= first.hour <= 19


def test_a_series_crosses_a_daylight_saving_change(synthetic_dir: Path) -> None:
    df = _series(synthetic_dir).with_columns(offset=pl.col("timestamp").str.slice(19, 5))
    offsets = df.group_by("series_id").agg(pl.col("offset").unique())["offset"].to_list()
    assert any(set(o) == {"-0400", "-0500"} for o in offsets)
    assert set(df["offset"].unique()) <= {"-0400", "-0500"}
    # the wall clock repeats an hour at the November change: local time goes back once
    for _, g in df.group_by("series_id"):
        if g["offset"].n_unique() == 2:
            local = g["timestamp"].str.slice(0, 19).str.to_datetime().dt.epoch("s").to_numpy()
            assert sorted(np.unique(np.diff(local)).tolist()) == [-3595, 5]


def test_values_in_range_and_rounded_like_the_real_files(synthetic_dir: Path) -> None:
    df = _series(synthetic_dir)
    anglez = df["anglez"].to_numpy().astype(np.float64)
    enmo = df["enmo"].to_numpy().astype(np.float64)
    assert np.isfinite(anglez).all() and np.isfinite(enmo).all()
    assert anglez.min() >= -90 and anglez.max() <= 90
    assert enmo.min() >= 0
    assert not np.signbit(enmo).any()  # no -0.0
    assert np.abs(anglez * 1e4 - np.round(anglez * 1e4)).max() < 0.05  # 4 decimals
    assert np.abs(enmo * 1e4 - np.round(enmo * 1e4)).max() < 0.01


def test_series_lengths_vary_and_one_is_under_a_day(synthetic_dir: Path) -> None:
    lengths = _series(synthetic_dir).group_by("series_id").len()["len"].to_numpy()
    assert lengths.min() < syn.STEPS_PER_DAY
    assert len(set(lengths.tolist())) == len(lengths)
    assert (lengths % 180 == 0).all()  # start and end on quarter hours


def test_event_steps_on_whole_minutes_inside_the_series(synthetic_dir: Path) -> None:
    series = _series(synthetic_dir)
    events = _events(synthetic_dir).drop_nulls("step")
    joined = events.join(
        series.select("series_id", pl.col("step").cast(pl.Int64), series_ts="timestamp"),
        on=["series_id", "step"],
        how="left",
    )
    assert joined["series_ts"].null_count() == 0  # every event step exists in its series
    assert (joined["timestamp"] == joined["series_ts"]).all()
    assert (events["step"] % 12 == 0).all()
    assert (events["timestamp"].str.slice(17, 2) == "00").all()
    for _, g in events.sort("series_id", "step").group_by("series_id"):
        assert g.sort("step")["event"].to_list() == g.sort("night", "event")["event"].to_list()


# ---------------------------------------------------------------- not-worn stretches


def _plans(n: int, days: float = 8.0, seed: int = 0) -> list[syn.SeriesPlan]:
    return [syn.make_plan(seed, syn.TRAIN, i, days) for i in range(n)]


def test_nights_without_events_are_not_worn_and_labelled_nights_are() -> None:
    n_empty = 0
    for plan in _plans(120):
        nonworn = np.zeros(plan.n_steps + 1, bool)
        for start, stop, _ in plan.nonwear:
            nonworn[start:stop] = True
        for k in range(len(plan.onset)):
            on = min(int(plan.onset[k]), plan.n_steps)
            wk = min(int(plan.wakeup[k]), plan.n_steps)
            if plan.labelled[k]:
                assert not nonworn[on:wk].any()
            else:
                n_empty += 1
                assert nonworn[on:wk].all()
    assert n_empty > 50


def test_not_worn_stretches_are_flat_or_exact_copies_of_earlier_days() -> None:
    found = set()
    for i, plan in enumerate(_plans(40)):
        codes = {code for *_, code in plan.nonwear}
        if not codes & {syn.FLAT, syn.COPY}:
            continue
        anglez, enmo = syn.generate_signal(plan, 0, syn.TRAIN, i)
        for start, stop, code in plan.nonwear:
            if code == syn.FLAT:
                assert np.unique(anglez[start:stop]).size == 1
                assert (enmo[start:stop] == 0).all()
            elif code == syn.COPY:
                day = syn.STEPS_PER_DAY
                assert np.array_equal(anglez[start:stop], anglez[start - day : stop - day])
                assert np.array_equal(enmo[start:stop], enmo[start - day : stop - day])
            else:
                continue
            found.add(code)
    assert found == {syn.FLAT, syn.COPY}


def test_the_showcase_night_is_a_copied_day_in_the_files(synthetic_dir: Path) -> None:
    sid = syn.series_id_for(1, syn.TRAIN, 0)
    events = _events(synthetic_dir).filter(pl.col("series_id") == sid)
    assert events.filter(pl.col("night") == 2)["step"].null_count() == 2
    s = _series(synthetic_dir).filter(pl.col("series_id") == sid)
    # night 2 lies between night 1's wakeup and night 3's onset
    lo = int(events.filter((pl.col("night") == 1) & (pl.col("event") == "wakeup"))["step"][0])
    hi = int(events.filter((pl.col("night") == 3) & (pl.col("event") == "onset"))["step"][0])
    a = s["anglez"].to_numpy()
    same = a[syn.STEPS_PER_DAY :] == a[: -syn.STEPS_PER_DAY]
    copied = same[max(lo, syn.STEPS_PER_DAY) - syn.STEPS_PER_DAY : hi - syn.STEPS_PER_DAY]
    assert copied.sum() > 6 * syn.STEPS_PER_HOUR  # hours of an exact repeat


# ---------------------------------------------------------------- determinism


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    a = syn.write_synthetic(tmp_path / "a", n_series=3, days=1.5, seed=7)
    b = syn.write_synthetic(tmp_path / "b", n_series=3, days=1.5, seed=7)
    c = syn.write_synthetic(tmp_path / "c", n_series=3, days=1.5, seed=8)
    for pa_, pb, pc in zip(a, b, c, strict=True):
        assert pa_.read_bytes() == pb.read_bytes()
        assert pa_.read_bytes() != pc.read_bytes()


def test_each_series_depends_only_on_seed_and_index(tmp_path: Path) -> None:
    small = _series(syn.write_synthetic(tmp_path / "s", n_series=4, days=1.0, seed=3)[0].parent)
    large = _series(syn.write_synthetic(tmp_path / "l", n_series=6, days=1.0, seed=3)[0].parent)
    assert small["series_id"].n_unique() == 4
    ids = small["series_id"].unique().to_list()
    assert small.equals(large.filter(pl.col("series_id").is_in(ids)))


def test_bad_arguments_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_series"):
        syn.write_synthetic(tmp_path, n_series=0)
    with pytest.raises(ValueError, match="days"):
        syn.write_synthetic(tmp_path, days=0.0)
    with pytest.raises(ValueError, match=r"variety is a share in \[0, 1\], got 1.5"):
        syn.write_synthetic(tmp_path, variety=1.5)


def test_cli_writes_the_three_files(tmp_path: Path) -> None:
    from sleepdetect.cli import main

    assert main(["synth", "--out", str(tmp_path), "--series", "1", "--days", "0.4"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [syn.SYNTHETIC_RECORD, "test_series.parquet", "train_events.csv",
                     "train_series.parquet"]  # fmt: skip
    assert pq.read_schema(tmp_path / "train_series.parquet").equals(EXPECTED_ARROW)


def test_train_rows_counts_without_generating(tmp_path: Path) -> None:
    path = syn.write_synthetic(tmp_path, n_series=3, days=1.0, seed=2)[0]
    assert pq.ParquetFile(path).metadata.num_rows == syn.train_rows(3, 1.0, 2)


def test_full_scale_arguments_give_the_competition_row_count() -> None:
    rows = syn.train_rows(**syn.FULL_SCALE)
    assert abs(rows / 127_946_340 - 1) < 0.005


def test_a_folder_of_an_older_generator_is_refused_and_kept(tmp_path: Path) -> None:
    from sleepdetect.config import load_config
    from sleepdetect.core.errors import InputError
    from sleepdetect.data.prepare import ensure_data

    cfg = load_config(None, [f"data.dir={tmp_path}", "data.synthetic.series=1",
                             "data.synthetic.days=0.5"])  # fmt: skip
    ensure_data(cfg)  # writes, then finds its own version
    assert ensure_data(cfg) == tmp_path
    record = tmp_path / syn.SYNTHETIC_RECORD
    old = record.read_text().replace(f'"generator": {syn.GENERATOR_VERSION}', '"generator": 1')
    record.write_text(old)
    before = (tmp_path / "train_series.parquet").read_bytes()
    with pytest.raises(InputError, match=r"generator version 1 .*delete the folder"):
        ensure_data(cfg)
    assert (tmp_path / "train_series.parquet").read_bytes() == before


# ---------------------------------------------------------------- variety


def test_variety_changes_only_the_series_it_draws() -> None:
    varied = 0
    for i in range(30):
        child = syn.make_plan(0, syn.TRAIN, i, 4.0)
        plan = syn.make_plan(0, syn.TRAIN, i, 4.0, variety=0.5)
        if plan.variety == syn.Variety():
            assert np.array_equal(plan.onset, child.onset) and plan.nonwear == child.nonwear
            a, b = syn.generate_signal(plan, 0, 0, i), syn.generate_signal(child, 0, 0, i)
            assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        else:
            varied += 1
    assert 8 < varied < 22
    roles = [syn.make_plan(0, syn.TRAIN, i, 4.0, r, variety=1.0) for i, r in enumerate(("dst",))]
    assert roles[0].variety == syn.Variety()  # the series the tests rely on stay children


def _clock_hours(plan: syn.SeriesPlan, steps: np.ndarray) -> np.ndarray:
    stamps = syn.timestamps(plan, steps).str.slice(11, 5).to_list()
    return np.array([int(t[:2]) + int(t[3:]) / 60 for t in stamps])


def test_each_trait_of_variety_shows_in_the_series() -> None:
    def plan(v: syn.Variety) -> syn.SeriesPlan:
        return syn.make_plan(4, syn.TRAIN, 5, 8.0, variety=v)

    child = plan(syn.Variety())
    later = plan(syn.Variety(onset_shift_h=3.0, sleep_shift_h=-1.5))
    shift = (_clock_hours(later, later.onset) - _clock_hours(child, child.onset) + 12) % 24 - 12
    assert np.median(shift) == pytest.approx(3.0, abs=0.05)
    assert np.median(later.wakeup - later.onset) < np.median(child.wakeup - child.onset) - 900

    a0, e0 = syn.generate_signal(child, 4, 0, 5)
    a1, _ = syn.generate_signal(plan(syn.Variety(mirrored=True)), 4, 0, 5)
    assert np.array_equal(a1, -a0)
    _, e2 = syn.generate_signal(plan(syn.Variety(noise_g=0.005)), 4, 0, 5)
    asleep = np.zeros(child.n_steps, bool)  # worn, and where enmo is most often exactly zero
    for k in np.flatnonzero(child.labelled):
        asleep[child.onset[k] : child.wakeup[k]] = True
    assert (e0[asleep] == 0).mean() > 0.1
    assert (e2[asleep] == 0).mean() < 0.7 * (e0[asleep] == 0).mean()

    lying = plan(syn.Variety(awake_in_bed_min=80))
    rng = np.random.default_rng(0)
    regime = syn._timeline(rng, lying)
    worn = lying.onset[lying.labelled]
    assert len(worn) >= 3
    for on in worn:
        assert (regime[on - 80 * 12 : on] == syn.IN_BED).all()

    gaps = [len(plan(syn.Variety(nonwear_factor=f)).nonwear) for f in (1.0, 5.0)]
    assert gaps[1] > gaps[0]


# ---------------------------------------------------------------- realism


def test_label_statistics_within_the_real_ranges() -> None:
    stats = _label_stats(syn.synthetic_events(300, 26.7, seed=0))
    for key, (real, tol) in REAL.items():
        assert abs(stats[key] - real) <= tol, f"{key}: {stats[key]:.3f} vs real {real} +- {tol}"


def test_real_label_statistics_are_the_ones_the_tests_use(real_data_dir: Path) -> None:
    events = pl.read_csv(real_data_dir / "all_train_events.csv", schema_overrides=EVENTS_SCHEMA)
    stats = _label_stats(events)
    for key, (real, _) in REAL.items():
        assert stats[key] == pytest.approx(real, abs=0.01), key


def test_sleep_is_still_and_wake_is_active(tmp_path: Path) -> None:
    folder = syn.write_synthetic(tmp_path, n_series=4, days=5.0, seed=11)[0].parent
    series, events = _series(folder), _events(folder).drop_nulls("step")
    sleep_enmo, wake_enmo, sleep_da, wake_da = [], [], [], []
    for sid, g in series.group_by("series_id"):
        ev = events.filter(pl.col("series_id") == sid[0])
        ev = ev.pivot(on="event", index="night", values="step").drop_nulls().sort("night")
        if ev.height < 2:
            continue
        enmo, anglez = g["enmo"].to_numpy(), g["anglez"].to_numpy()
        da = np.abs(np.diff(anglez, prepend=anglez[0]))
        on, wk = ev["onset"].to_numpy(), ev["wakeup"].to_numpy()
        nights = ev["night"].to_numpy()
        for i in range(ev.height):
            sleep_enmo.append(enmo[on[i] : wk[i]])
            sleep_da.append(da[on[i] : wk[i]])
            if i + 1 < ev.height and nights[i + 1] == nights[i] + 1:  # a worn day between
                wake_enmo.append(enmo[wk[i] + 720 : on[i + 1] - 720])
                wake_da.append(da[wk[i] + 720 : on[i + 1] - 720])
    se, we = np.concatenate(sleep_enmo), np.concatenate(wake_enmo)
    sd, wd = np.concatenate(sleep_da), np.concatenate(wake_da)
    # real sample: enmo median 0.008 asleep vs 0.022 awake, zero 27 % vs 10 %; |diff anglez|
    # median 0.045 vs 3.6 deg; |diff| < 1 deg on 90 % vs 31 % of steps
    assert 0.003 < np.median(se) < 0.015 and 0.012 < np.median(we) < 0.04
    assert np.mean(se) < 0.4 * np.mean(we)
    assert (se == 0).mean() > (we == 0).mean() + 0.08
    assert np.median(sd) < 0.2 and np.median(wd) > 1.5
    assert (sd < 1).mean() > 0.85 and (wd < 1).mean() < 0.45


# ---------------------------------------------------------------- plots


def test_plot_series_writes_a_small_png(synthetic_dir: Path, tmp_path: Path) -> None:
    from sleepdetect.plots import plot_series

    series = _series(synthetic_dir)
    sid = series["series_id"][0]
    path = plot_series(
        series.filter(pl.col("series_id") == sid), _events(synthetic_dir), tmp_path / "s.png", sid
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size < 300_000
    with pytest.raises(ValueError, match="one series_id"):
        plot_series(series, None, tmp_path / "x.png")


def test_docs_picture_is_committed_small() -> None:
    png = Path(__file__).resolve().parents[1] / "docs" / "synthetic_series.png"
    assert png.is_file(), "regenerate it: python bench/plot_synthetic.py"
    assert png.stat().st_size < 300_000
