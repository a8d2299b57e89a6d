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


def _save(fig: plt.Figure, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)


def plot_training_curves(
    log_csvs: list[str | os.PathLike[str]], path: str | os.PathLike[str]
) -> Path:
    """Training loss per step and validation score per epoch, from Lightning's CSV logs (one
    per start of the run: a resumed run continues in a new file)."""
    log = pl.concat([pl.read_csv(f) for f in log_csvs], how="diagonal_relaxed")
    fig, (ax_l, ax_s) = plt.subplots(1, 2, figsize=(11, 3.5), constrained_layout=True)
    if "train_loss_step" in log.columns:
        loss = log.drop_nulls("train_loss_step")
        ax_l.plot(loss["step"], loss["train_loss_step"], lw=0.8)
    ax_l.set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    if "val_score" in log.columns:
        val = log.drop_nulls("val_score")
        ax_s.plot(val["epoch"], val["val_score"], marker="o")
    ax_s.set(xlabel="epoch", ylabel="event detection AP", title="validation score")
    return _save(fig, path)


def plot_nights(
    scores: pl.DataFrame,
    solution: pl.DataFrame,
    candidates: pl.DataFrame,
    path: str | os.PathLike[str],
    n_nights: int = 4,
    half_window: int = 8640,
) -> Path:
    """Predicted onset/wakeup scores around a few labelled nights, with the true events (solid)
    and the best candidates (dotted), to see how far off the peaks sit.

    `scores`: series_id, step, onset, wakeup per step; `solution`: series_id, event, step."""
    onsets = solution.filter(pl.col("event") == "onset").sort("series_id", "step")
    picks = onsets[:: max(1, len(onsets) // n_nights)][:n_nights] if len(onsets) else onsets
    fig, axes = plt.subplots(
        max(len(picks), 1),
        1,
        figsize=(12, 2.2 * max(len(picks), 1)),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, row in zip(axes[:, 0], picks.iter_rows(named=True), strict=False):
        sid, centre = row["series_id"], row["step"] + 3000
        lo, hi = centre - half_window, centre + half_window
        s = scores.filter((pl.col("series_id") == sid) & pl.col("step").is_between(lo, hi))
        for kind, color in EVENT_COLORS.items():
            ax.plot(s["step"], s[kind], color=color, lw=0.8, label=f"{kind} score")
            truth = solution.filter(
                (pl.col("series_id") == sid)
                & (pl.col("event") == kind)
                & pl.col("step").is_between(lo, hi)
            )
            for step in truth["step"]:
                ax.axvline(step, color=color, lw=1.5)
            cand = candidates.filter(
                (pl.col("series_id") == sid)
                & (pl.col("event") == kind)
                & pl.col("step").is_between(lo, hi)
            ).top_k(2, by="score")
            for step in cand["step"]:
                ax.axvline(step, color=color, lw=1.0, ls=":")
        ax.set(xlim=(lo, hi), ylim=(0, 1.02), ylabel="score", title=f"series {sid}")
    axes[0, 0].legend(loc="upper right", fontsize=8, ncols=2)
    axes[-1, 0].set_xlabel("step (solid: true event, dotted: top candidates)")
    return _save(fig, path)
