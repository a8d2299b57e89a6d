"""Pictures people would rather see than read: one series' signal with its events.

Matplotlib runs on the Agg backend, so plotting works on servers and in Kaggle kernels without a
display.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from sleepdetect.files import atomic_path  # noqa: E402

EVENT_COLORS = {"onset": "tab:green", "wakeup": "tab:red"}


def _local_time(timestamp: pl.Series) -> pl.Series:
    """Wall-clock time as the recording shows it; the UTC offset is dropped so days line up."""
    return timestamp.str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S", time_unit="ms")


def plot_series(
    series_df: pl.DataFrame,
    events_df: pl.DataFrame | None,
    path: str | os.PathLike[str],
    title: str = "",
) -> Path:
    """Draw anglez and enmo of one series over local time, onsets and wakeups as vertical lines,
    and the labelled sleep shaded, then save a PNG at `path`.

    `series_df` needs `step`, `timestamp`, `anglez`, `enmo` of a single series; `events_df` holds
    that series' `event` and `step` rows (rows with an empty step are skipped) or is None.
    """
    if series_df.is_empty():
        raise ValueError("plot_series: series_df has no rows; select one series with rows")
    n_ids = series_df["series_id"].n_unique() if "series_id" in series_df.columns else 1
    if n_ids != 1:
        raise ValueError(
            f"plot_series: series_df holds {n_ids} series; filter it to one series_id first"
        )
    df = series_df.sort("step")
    t = _local_time(df["timestamp"]).to_numpy()
    step0 = int(df["step"][0])
    steps = df["step"].cast(pl.Int64).to_numpy()

    fig, (ax_a, ax_e) = plt.subplots(2, 1, figsize=(14, 5.5), sharex=True, constrained_layout=True)
    ax_a.plot(t, df["anglez"].to_numpy(), lw=0.3, color="tab:blue", rasterized=True)
    ax_a.set_ylabel("anglez (deg)")
    ax_a.set_ylim(-92, 92)
    ax_e.plot(t, df["enmo"].to_numpy(), lw=0.3, color="tab:purple", rasterized=True)
    ax_e.set_ylabel("enmo (g)")
    ax_e.set_ylim(bottom=0)

    if events_df is not None and not events_df.is_empty():
        ev = events_df.filter(pl.col("step").is_not_null()).sort("step")
        if "series_id" in ev.columns and "series_id" in df.columns:
            ev = ev.filter(pl.col("series_id") == df["series_id"][0])
        in_range = (ev["step"].cast(pl.Int64) >= step0) & (ev["step"].cast(pl.Int64) <= steps[-1])
        ev = ev.filter(in_range)
        onset_at = None
        for kind, step in zip(
            ev["event"].to_list(), ev["step"].cast(pl.Int64).to_list(), strict=True
        ):
            x = t[step - step0]
            for ax in (ax_a, ax_e):
                ax.axvline(x, color=EVENT_COLORS.get(kind, "black"), lw=1.0)
            if kind == "onset":
                onset_at = x
            elif kind == "wakeup" and onset_at is not None:
                for ax in (ax_a, ax_e):
                    ax.axvspan(onset_at, x, color="tab:green", alpha=0.08, lw=0)
                onset_at = None
        handles = [plt.Line2D([], [], color=c, lw=1.0, label=k) for k, c in EVENT_COLORS.items()]
        ax_a.legend(handles=handles, loc="upper right", fontsize=8, ncols=2)

    ax_e.xaxis.set_major_locator(mdates.DayLocator())
    ax_e.xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
    ax_e.xaxis.set_minor_locator(mdates.HourLocator(byhour=[6, 12, 18]))
    for ax in (ax_a, ax_e):
        ax.grid(True, which="major", axis="x", lw=0.5, alpha=0.5)
        ax.margins(x=0)
    if title:
        ax_a.set_title(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
