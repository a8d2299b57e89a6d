"""Pictures people would rather see than read: one series' signal with its events, training
curves, predicted scores around nights, and the actogram of a sleep report.

Matplotlib runs on the Agg backend, so plotting works on servers and in Kaggle kernels without a
display.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from sleepdetect.core.files import atomic_path  # noqa: E402

EVENT_COLORS = {"onset": "tab:green", "wakeup": "tab:red"}
NOT_WORN_COLOR = "0.75"
SLEEP_COLOR = "tab:blue"


def _local_time(timestamp: pl.Series) -> pl.Series:
    """Wall-clock time as the recording shows it; the UTC offset is dropped so days line up."""
    return timestamp.str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S", time_unit="ms")


def plot_series(
    series_df: pl.DataFrame,
    events_df: pl.DataFrame | None,
    path: str | os.PathLike[str],
    title: str = "",
    not_worn: np.ndarray | None = None,
) -> Path:
    """Draw anglez and enmo of one series over local time, onsets and wakeups as vertical lines,
    the labelled sleep shaded and, with `not_worn`, the not-worn stretches in grey, then save a
    PNG at `path`.

    `series_df` needs `step`, `timestamp`, `anglez`, `enmo` of a single series; `events_df` holds
    that series' `event` and `step` rows (rows with an empty step are skipped) or is None;
    `not_worn` is a bool per step (in step order), e.g. `data.features.not_worn_of(series_df)`.
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
    if not_worn is not None:
        if len(not_worn) != len(df):
            raise ValueError(
                f"plot_series: not_worn has {len(not_worn)} values for {len(df)} steps; give "
                "one per step of the series"
            )
        for start, stop in _runs(np.asarray(not_worn, dtype=bool)):
            for ax in (ax_a, ax_e):
                ax.axvspan(t[start], t[stop - 1], color=NOT_WORN_COLOR, alpha=0.5, lw=0)
        ax_e.legend(
            handles=[Patch(color=NOT_WORN_COLOR, alpha=0.5, label="not worn")],
            loc="upper left",
            fontsize=8,
        )

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


def night_picks(solution: pl.DataFrame, n_nights: int = 4) -> pl.DataFrame:
    """The onsets of the `n_nights` nights plot_nights shows, spread over the labelled ones:
    03_infer keeps the scores of their series only, not of every series."""
    onsets = solution.filter(pl.col("event") == "onset").sort("series_id", "step")
    return onsets[:: max(1, len(onsets) // n_nights)][:n_nights] if len(onsets) else onsets


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
    picks = night_picks(solution, n_nights)
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


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index pairs of the True runs of a bool array."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(
        zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True)
    )


@dataclass(frozen=True)
class Actogram:
    """A saved actogram: its PNG and the first day of each row (row i shows days[i] and the
    day after)."""

    path: Path
    days: list[dt.date]


def plot_actogram(
    series_df: pl.DataFrame,
    path: str | os.PathLike[str],
    sleep: pl.DataFrame | None = None,
    events: pl.DataFrame | None = None,
    title: str = "",
    bin_minutes: int = 5,
) -> Actogram:
    """The double-plotted actogram of one series: one row per local calendar day, each row that
    day and the next (48 h), so a night never breaks at a row's edge and a drifting rhythm
    reads as a slope. Activity is the mean enmo per `bin_minutes` as bars (clipped at its 99th
    percentile), detected sleep shaded blue, not-worn stretches grey, labelled onsets and
    wakeups as green and red ticks.

    `series_df`: step, timestamp, enmo of one series, plus an optional bool `not_worn`.
    `sleep`: rows with `onset_step`, `wakeup_step` (e.g. the report's; empty ones skipped).
    `events`: labels (`event`, `step`; rows of other series or without a step skipped).
    Bins follow the wall clock, so a daylight-saving hour is doubled or missing as it was lived.
    """
    if series_df.is_empty():
        raise ValueError("plot_actogram: series_df has no rows; select one series with rows")
    if 1440 % bin_minutes:
        raise ValueError(f"plot_actogram: bin_minutes={bin_minutes} must divide a day (1440)")
    df = series_df.sort("step")
    local = _local_time(df["timestamp"]).to_numpy()
    day0 = local[0].astype("datetime64[D]")
    minutes = (local - day0) / np.timedelta64(1, "m")  # since the first local midnight
    steps = df["step"].cast(pl.Int64).to_numpy()
    n_days = int(minutes[-1] // 1440) + 1
    per_day = 1440 // bin_minutes
    n_bins = (n_days + 1) * per_day  # one empty day after the last, for its row's right half
    b = (minutes // bin_minutes).astype(np.int64)
    count = np.bincount(b, minlength=n_bins)
    enmo = np.bincount(b, weights=df["enmo"].to_numpy(), minlength=n_bins) / np.maximum(count, 1)
    off = np.zeros(n_bins, dtype=bool)
    if "not_worn" in df.columns:
        worn_off = np.bincount(
            b, weights=df["not_worn"].cast(pl.Float64).to_numpy(), minlength=n_bins
        )
        off = worn_off > 0.5 * np.maximum(count, 1)
    top = float(np.percentile(enmo[count > 0], 99)) or float(enmo.max()) or 1.0

    def at(step_values: list[int]) -> np.ndarray:
        """Minutes since day0 of steps of this series (steps outside it dropped)."""
        s = np.asarray([v for v in step_values if steps[0] <= v <= steps[-1]], dtype=np.int64)
        return minutes[np.searchsorted(steps, s)]

    windows = []
    if sleep is not None and not sleep.is_empty():
        pairs = sleep.drop_nulls(["onset_step", "wakeup_step"])
        starts, stops = at(pairs["onset_step"].to_list()), at(pairs["wakeup_step"].to_list())
        windows = list(zip(starts.tolist(), stops.tolist(), strict=True))
    ticks: dict[str, np.ndarray] = {}
    if events is not None and not events.is_empty():
        ev = events.filter(pl.col("step").is_not_null())
        if "series_id" in ev.columns and "series_id" in df.columns:
            ev = ev.filter(pl.col("series_id") == df["series_id"][0])
        for kind in EVENT_COLORS:
            ticks[kind] = at(ev.filter(pl.col("event") == kind)["step"].cast(pl.Int64).to_list())

    days = [(day0 + np.timedelta64(i, "D")).astype(dt.date) for i in range(n_days)]
    height = 0.42 * n_days + 1.3  # inches: 0.42 a row, 0.75 above for title and legend
    fig, axes = plt.subplots(n_days, 1, figsize=(11, height), sharex=True, squeeze=False)
    fig.subplots_adjust(hspace=0, left=0.1, right=0.98, top=1 - 0.75 / height, bottom=0.55 / height)
    edges = np.arange(2 * per_day + 1) * bin_minutes / 60  # hours 0..48 of a row
    for d, ax in enumerate(axes[:, 0]):
        lo = d * per_day
        row_off = off[lo : lo + 2 * per_day]
        bars = np.minimum(enmo[lo : lo + 2 * per_day], top)
        for start, stop in _runs(row_off):
            ax.axvspan(edges[start], edges[stop], color=NOT_WORN_COLOR, alpha=0.6, lw=0)
        shift = d * 24.0
        for start, stop in windows:
            a, z = start / 60 - shift, stop / 60 - shift
            if z > 0 and a < 48:
                ax.axvspan(max(a, 0), min(z, 48), color=SLEEP_COLOR, alpha=0.25, lw=0)
        ax.stairs(bars, edges, fill=True, color="black", lw=0)
        for kind, at_min in ticks.items():
            x = at_min / 60 - shift
            x = x[(x >= 0) & (x <= 48)]
            ax.vlines(x, 0.55 * top, 1.0 * top, color=EVENT_COLORS[kind], lw=1.6)
        ax.axvline(24, color="0.4", lw=0.6)
        ax.set_ylim(0, top * 1.02)
        ax.set_yticks([])
        ax.set_ylabel(days[d].strftime("%a %d %b"), rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", length=0 if d < n_days - 1 else 3.5)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    last = axes[-1, 0]
    last.set_xlim(0, 48)
    last.set_xticks(range(0, 49, 3))
    last.set_xticklabels([f"{h % 24:02d}" for h in range(0, 49, 3)], fontsize=8)
    last.set_xlabel("local clock time (h): each row is a day and the next")
    handles = [
        Patch(color="black", label=f"enmo ({bin_minutes}-min mean)"),
        Patch(color=SLEEP_COLOR, alpha=0.25, label="detected sleep"),
        Patch(color=NOT_WORN_COLOR, alpha=0.6, label="not worn"),
        *[
            plt.Line2D([], [], color=c, lw=1.6, label=f"labelled {k}")
            for k, c in EVENT_COLORS.items()
        ],
    ]
    fig.legend(
        handles=handles,
        loc="upper right",
        bbox_to_anchor=(0.98, 1 - 0.3 / height),
        ncols=5,
        fontsize=8,
        frameon=False,
    )
    if title:
        fig.suptitle(title, x=0.1, y=1 - 0.06 / height, ha="left", va="top", fontsize=10)
    return Actogram(_save(fig, path), days)


def plot_event_scores(
    scores: pl.DataFrame,
    candidates: pl.DataFrame,
    path: str | os.PathLike[str],
    events: pl.DataFrame | None = None,
    first_timestamp: str | None = None,
    title: str = "",
) -> Path:
    """Predicted onset and wakeup scores over a whole series (one panel each), its candidates
    as dots at their scores and, where labels exist, the true events as vertical lines.

    `scores`: step, onset, wakeup of one series; `candidates`: step, event, score of it (other
    series' rows are skipped when both have series_id); `events`: its labels or None. With
    `first_timestamp` (step 0's) the x axis is local time (daylight-saving shifts ignored),
    else steps."""
    if scores.is_empty():
        raise ValueError("plot_event_scores: scores has no rows; give one series' scores")
    sid = scores["series_id"][0] if "series_id" in scores.columns else None

    def mine(frame: pl.DataFrame) -> pl.DataFrame:
        if sid is not None and "series_id" in frame.columns:
            return frame.filter(pl.col("series_id") == sid)
        return frame

    def x_of(step: pl.Series) -> np.ndarray:
        step = step.cast(pl.Int64).to_numpy()
        if first_timestamp is None:
            return step
        start = np.datetime64(first_timestamp[:19], "s")
        return start + step * np.timedelta64(5, "s")

    s = scores.sort("step")
    cand = mine(candidates)
    truth = mine(events).filter(pl.col("step").is_not_null()) if events is not None else None
    fig, axes = plt.subplots(2, 1, figsize=(14, 4.8), sharex=True, constrained_layout=True)
    for ax, (kind, color) in zip(axes, EVENT_COLORS.items(), strict=True):
        ax.plot(x_of(s["step"]), s[kind].to_numpy(), color=color, lw=0.6, label=f"{kind} score")
        c = cand.filter(pl.col("event") == kind)
        ax.scatter(
            x_of(c["step"]), c["score"].to_numpy(), s=9, color="black", zorder=3, label="candidates"
        )
        if truth is not None:
            for i, x in enumerate(x_of(truth.filter(pl.col("event") == kind)["step"])):
                ax.axvline(
                    x, color=color, lw=1.2, alpha=0.7, ls="--", label="labelled" if i == 0 else None
                )
        ax.set(ylabel="score", ylim=(0, max(1.02, float(c["score"].max() or 0) * 1.05)))
        ax.legend(loc="upper right", fontsize=8, ncols=3)
        ax.margins(x=0)
    if first_timestamp is not None:
        axes[1].xaxis.set_major_locator(mdates.DayLocator())
        axes[1].xaxis.set_major_formatter(mdates.DateFormatter("%a %d %b"))
        axes[1].xaxis.set_minor_locator(mdates.HourLocator(byhour=[6, 12, 18]))
        axes[1].set_xlabel("local time")
    else:
        axes[1].set_xlabel("step")
    if title:
        axes[0].set_title(title)
    return _save(fig, path)


def plot_bland_altman(nights: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Detected minus diary times against their mean, onset and wakeup side by side, with the
    bias and the 95% limits of agreement (mean +- 1.96 sd). `nights`: diary.compare's rows
    (onset, wakeup, diary_onset, diary_wakeup, *_diff_min)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    for ax, event in zip(axes[0], EVENT_COLORS, strict=True):
        diff = nights[f"{event}_diff_min"].to_numpy().astype(float)
        detected = nights[event].to_numpy().astype("datetime64[s]")
        diary = nights[f"diary_{event}"].to_numpy().astype("datetime64[s]")
        mean = diary + (detected - diary) / 2
        clock_h = (mean - mean.astype("datetime64[D]")) / np.timedelta64(1, "h")
        ax.scatter(clock_h, diff, color=EVENT_COLORS[event], s=18)
        if len(diff) > 1:
            bias, sd = diff.mean(), diff.std(ddof=1)
            ax.axhline(bias, color="0.2", lw=1, label=f"bias {bias:+.0f} min")
            for limit in (bias - 1.96 * sd, bias + 1.96 * sd):
                ax.axhline(limit, color="0.5", lw=0.8, ls="--")
            ax.legend(fontsize=8, frameon=False)
        ax.axhline(0, color="0.8", lw=0.6)
        ax.set_title(f"{event}: {len(diff)} nights", fontsize=10)
        ax.set_xlabel("mean of detected and diary (local clock, h)")
        ax.set_ylabel("detected - diary (min)")
    fig.tight_layout()
    return _save(fig, path)
