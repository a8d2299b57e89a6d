"""Second stage: event candidates rescored by a gradient-boosted model of their context.

The first stage scores each step; its candidates are ranked by peak height (or mass), which
knows nothing of what surrounds the peak: whether it is the night's best, whether it falls in
the afternoon, whether the wearer is still before and moving after it, whether a candidate of
the other type sits a few hours away. The competition's winners rescored candidates with
LightGBM on such features, trained on out-of-fold candidates, which lifted AP because AP ranks
candidates of all nights and series together.

Target: a candidate's soft match with the labels, the fraction of the metric's tolerances at
which a label of its type lies within reach (`soft_targets`), which is what the candidate can
earn; the model (cross-entropy on targets in [0, 1]) predicts it, and the prediction becomes
the score.

`rescore_out_of_fold` trains, for each fold k, on the candidates of the other folds and scores
fold k's, so the rescored OOF score is honest. Inference does not rescore: `tune` reports
the nested score with the second stage, and that is its whole use today. The features of a
candidate read only the inputs (per-step scores, candidates, prepared features), never labels.
LightGBM is optional (`.[stage2]`): it is imported inside the functions that need it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from scipy.ndimage import maximum_filter1d

from sleepdetect.core.constants import EVENTS, STEP_SECONDS, STEPS_PER_DAY, TOLERANCES
from sleepdetect.data.prepare import Manifest
from sleepdetect.events.postprocess import day_start_of

if TYPE_CHECKING:
    import lightgbm

# windows (steps, each side) of the per-step score statistics: 1 min, 5 min, 30 min
SCORE_WINDOWS = (12, 60, 360)
# windows (steps) of the activity means before and after a candidate: 30 min, 2 h
ACTIVITY_WINDOWS = (360, 1440)
# distances to the other event type's candidates and to the series' edges are clipped here
DISTANCE_CLIP = STEPS_PER_DAY
# prepared rolling features read at the candidate's step when present
_ROLLING = re.compile(r"^(enmo|anglez_absdiff)_(mean|std|max)_\d+$")

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "cross_entropy",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
    "feature_pre_filter": False,
    "verbose": -1,
}
NUM_BOOST_ROUND = 200


def _lightgbm():
    try:
        import lightgbm  # the optional extra `.[stage2]`: imported when rescoring runs
    except ImportError as e:
        raise ImportError(
            "stage-2 rescoring needs lightgbm, an optional dependency: pip install -e '.[stage2]'"
        ) from e
    return lightgbm


# ---------------------------------------------------------------- inputs


def _seconds_of_day(first_timestamp: str, steps: np.ndarray) -> np.ndarray:
    """Local seconds since midnight of each step (the series' first UTC offset throughout,
    like the day windows of postprocess)."""
    midnight = day_start_of(first_timestamp, hour=0)
    return np.mod(steps - midnight, STEPS_PER_DAY) * STEP_SECONDS


def _window_mean(cum: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Mean of x[lo:hi] from cum = [0, cumsum(x)] (windows clipped to the series; 0 if
    empty)."""
    n = cum.size - 1
    lo, hi = np.clip(lo, 0, n), np.clip(hi, 0, n)
    return (cum[hi] - cum[lo]) / np.maximum(hi - lo, 1)


def _cumsum(x: np.ndarray) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(np.nan_to_num(np.asarray(x, dtype=np.float64)))))


def _activity_signals(manifest: Manifest, series_id: str) -> dict[str, np.ndarray]:
    """Per-step activity of a series from whatever was prepared: enmo, and |anglez change|
    (from anglez_diff, else from anglez). Both are in the prepared (normalised) units."""
    out = {}
    enmo = manifest.feature(series_id, "enmo")
    if enmo is not None:
        out["enmo"] = np.asarray(enmo, dtype=np.float64)
    diff = manifest.feature(series_id, "anglez_diff")
    if diff is not None:
        out["anglez_absdiff"] = np.abs(np.asarray(diff, dtype=np.float64))
    else:
        angle = manifest.feature(series_id, "anglez")
        if angle is not None:
            angle = np.asarray(angle, dtype=np.float64)
            out["anglez_absdiff"] = np.abs(np.diff(angle, prepend=angle[:1]))
    return out


# ---------------------------------------------------------------- features


def candidate_features(
    candidates: pl.DataFrame, scores: dict[str, np.ndarray], manifest: Manifest
) -> pl.DataFrame:
    """One row per candidate (same order), numeric columns only, no NaN: what the first stage
    did not see when it scored the candidate.

    candidates: series_id, step, event, score (other columns are ignored).
    scores: series_id -> (steps, 2) onset/wakeup per-step scores of the whole series.
    manifest: the prepared series (first timestamps, lengths, features).

    Columns (`self` is the candidate's event type, `other` the other one):
      score, is_wakeup;
      day_rank, day_count, score_over_day_max, score_over_day_sum: among the candidates of
        its event type in its noon-to-noon local day window (a night's best ranks 1);
      hour_sin, hour_cos: local time of day;
      self_at, other_at, {self,other}_{max,mean}_{12,60,360}: per-step scores at the step
        and over +-w steps (a sharp lone peak versus a broad or contested one);
      {enmo,anglez_absdiff}_{before,after,change}_{360,1440}: activity means over w steps
        before and after it; change is before - after for onsets, after - before for
        wakeups (positive when the activity turns as the event says);
      day_repeat: the prepared flag at the step (repeated, not-worn days), if prepared;
      the prepared rolling features (enmo_std_60, ...) at the step, if prepared;
      other_before, other_after, other_nearest: steps to the nearest candidate of the other
        event type before / after it (clipped at a day);
      from_start, to_end: steps from the series' first step and to its last (clipped at a
        day), as nights cut by the recording's edges carry no labels.
    """
    n = candidates.height
    sids = candidates["series_id"].cast(pl.String).to_numpy().astype(str)
    steps = candidates["step"].cast(pl.Int64).to_numpy()
    event_names = candidates["event"].to_numpy().astype(str)
    bad = ~np.isin(event_names, EVENTS)
    if bad.any():
        raise ValueError(
            f"candidate event must be one of {list(EVENTS)}, got {event_names[bad][0]!r}"
        )
    event = (event_names == EVENTS[1]).astype(np.int64)
    score = candidates["score"].cast(pl.Float64).to_numpy()
    if not np.isfinite(score).all():
        raise ValueError("candidate scores must be finite")

    cols: dict[str, np.ndarray] = {}

    def put(name: str, idx: np.ndarray, values: np.ndarray) -> None:
        if name not in cols:
            cols[name] = np.zeros(n, np.float64)
        cols[name][idx] = values

    cols["score"] = score.astype(np.float64)
    cols["is_wakeup"] = event.astype(np.float64)
    entries = {s.series_id: s for s in manifest.series}
    rolling = [f for f in manifest.feature_names if _ROLLING.match(f)]
    for sid in np.unique(sids):
        idx = np.flatnonzero(sids == sid)
        entry = entries.get(sid)
        if entry is None:
            raise KeyError(f"series {sid!r} of the candidates is not in the manifest")
        if sid not in scores:
            raise KeyError(f"series {sid!r} of the candidates has no score trace")
        trace = np.nan_to_num(np.asarray(scores[sid], dtype=np.float64))  # NaN: no evidence
        if trace.shape != (entry.n_steps, 2):
            raise ValueError(
                f"{sid}: score trace must have shape ({entry.n_steps}, 2), got {trace.shape}"
            )
        s, e, sc = steps[idx], event[idx], score[idx]
        if s.size and (s.min() < 0 or s.max() >= entry.n_steps):
            raise ValueError(f"{sid}: candidate steps must lie in [0, {entry.n_steps})")

        _day_features(put, idx, s, e, sc, day_start_of(entry.first_timestamp))
        angle = 2 * np.pi * _seconds_of_day(entry.first_timestamp, s) / 86400
        put("hour_sin", idx, np.sin(angle))
        put("hour_cos", idx, np.cos(angle))

        for role, channel in (("self", e), ("other", 1 - e)):
            put(f"{role}_at", idx, trace[s, channel])
        cums = [_cumsum(trace[:, c]) for c in range(2)]
        for w in SCORE_WINDOWS:
            for c in range(2):
                mx = maximum_filter1d(trace[:, c], size=2 * w + 1, mode="nearest")[s]
                mean = _window_mean(cums[c], s - w, s + w + 1)
                for role, mask in (("self", e == c), ("other", e != c)):
                    put(f"{role}_max_{w}", idx[mask], mx[mask])
                    put(f"{role}_mean_{w}", idx[mask], mean[mask])

        sign = np.where(e == 0, 1.0, -1.0)
        for name, signal in _activity_signals(manifest, sid).items():
            cum = _cumsum(signal)
            for w in ACTIVITY_WINDOWS:
                before = _window_mean(cum, s - w, s)
                after = _window_mean(cum, s, s + w)
                put(f"{name}_before_{w}", idx, before)
                put(f"{name}_after_{w}", idx, after)
                put(f"{name}_change_{w}", idx, sign * (before - after))
        if "day_repeat" in manifest.feature_names:
            put("day_repeat", idx, np.nan_to_num(manifest.feature(sid, "day_repeat")[s]))
        for f in rolling:
            put(f, idx, np.nan_to_num(manifest.feature(sid, f)[s].astype(np.float64)))

        _other_distances(put, idx, s, e)
        put("from_start", idx, np.minimum(s, DISTANCE_CLIP))
        put("to_end", idx, np.minimum(entry.n_steps - 1 - s, DISTANCE_CLIP))

    return pl.DataFrame([pl.Series(k, v, dtype=pl.Float64) for k, v in cols.items()])


_Put = Callable[[str, np.ndarray, np.ndarray], None]


def _day_features(
    put: _Put, idx: np.ndarray, s: np.ndarray, e: np.ndarray, sc: np.ndarray, day_start: int
) -> None:
    """Rank (1 = best), count, score / max and score / sum among the candidates of the same
    event type in the same noon-to-noon day window of one series."""
    day = np.floor_divide(s - day_start, STEPS_PER_DAY)
    _, group = np.unique(np.stack([e, day]), axis=1, return_inverse=True)
    group = group.ravel()
    order = np.lexsort((s, -sc, group))  # equal scores: the earlier step first
    g_sorted = group[order]
    first = np.append(True, g_sorted[1:] != g_sorted[:-1])
    start = np.maximum.accumulate(np.where(first, np.arange(g_sorted.size), 0))
    rank = np.empty(s.size, np.float64)
    rank[order] = np.arange(g_sorted.size) - start + 1
    count = np.bincount(group).astype(np.float64)
    top = np.full(count.size, -np.inf)
    np.maximum.at(top, group, sc)
    total = np.bincount(group, weights=sc)
    put("day_rank", idx, rank)
    put("day_count", idx, count[group])
    put(
        "score_over_day_max",
        idx,
        np.divide(sc, top[group], out=np.zeros(s.size), where=top[group] > 0),
    )
    put(
        "score_over_day_sum",
        idx,
        np.divide(sc, total[group], out=np.zeros(s.size), where=total[group] > 0),
    )


def _other_distances(put: _Put, idx: np.ndarray, s: np.ndarray, e: np.ndarray) -> None:
    """Steps to the nearest candidate of the other event type before and after (clipped)."""
    before = np.full(s.size, DISTANCE_CLIP, np.int64)
    after = np.full(s.size, DISTANCE_CLIP, np.int64)
    for c in range(2):
        mine = e == c
        other = np.sort(s[e != c])
        if not mine.any() or other.size == 0:
            continue
        at = s[mine]
        j = np.searchsorted(other, at, side="left")  # other[j - 1] < at <= other[j]
        has_before, has_after = j > 0, j < other.size
        b = np.full(at.size, DISTANCE_CLIP, np.int64)
        a = np.full(at.size, DISTANCE_CLIP, np.int64)
        b[has_before] = at[has_before] - other[j[has_before] - 1]
        a[has_after] = other[j[has_after]] - at[has_after]
        before[mine], after[mine] = b, a
    before, after = np.minimum(before, DISTANCE_CLIP), np.minimum(after, DISTANCE_CLIP)
    put("other_before", idx, before)
    put("other_after", idx, after)
    put("other_nearest", idx, np.minimum(before, after))


# ---------------------------------------------------------------- targets


def soft_targets(candidates: pl.DataFrame, solution: pl.DataFrame) -> np.ndarray:
    """For each candidate, the fraction of metric.TOLERANCES T for which a label of its event
    type in its series lies at distance < T: 1 on a label, falling with distance, 0 beyond
    the largest tolerance. It is how much of the metric a candidate can earn there (the
    matching's competition between candidates aside), a smoother target than hit/miss."""
    tol = np.sort(np.asarray(TOLERANCES, dtype=np.float64))
    labels = solution.drop_nulls("step").select(
        pl.col("series_id").cast(pl.String), "event", pl.col("step").cast(pl.Int64)
    )
    by_key = {
        (sid, ev): np.sort(part["step"].to_numpy())
        for (sid, ev), part in labels.group_by(["series_id", "event"])
    }
    dist = np.full(candidates.height, np.inf)
    rows = candidates.select(
        pl.col("series_id").cast(pl.String), "event", pl.col("step").cast(pl.Int64)
    ).with_row_index("row")
    for (sid, ev), part in rows.group_by(["series_id", "event"]):
        g = by_key.get((sid, ev))
        if g is None or g.size == 0:
            continue
        s = part["step"].to_numpy()
        j = np.searchsorted(g, s)
        left = np.abs(s - g[np.clip(j - 1, 0, g.size - 1)])
        right = np.abs(g[np.clip(j, 0, g.size - 1)] - s)
        dist[part["row"].to_numpy()] = np.minimum(left, right)
    return (tol.size - np.searchsorted(tol, dist, side="right")) / tol.size


# ---------------------------------------------------------------- model


def fit_rescorer(
    features: pl.DataFrame, targets: np.ndarray, seed: int = 0, **params: Any
) -> lightgbm.Booster:
    """LightGBM on (features, soft targets): cross-entropy, which takes targets in [0, 1],
    with small fixed parameters (DEFAULT_PARAMS, NUM_BOOST_ROUND rounds) that suit a few
    thousand rows and give the same model for the same inputs and seed (one thread,
    deterministic). `params` override them; `num_boost_round` sets the rounds."""
    lgb = _lightgbm()
    targets = np.asarray(targets, dtype=np.float64)
    if targets.shape != (features.height,):
        raise ValueError(f"{features.height} feature rows but targets of shape {targets.shape}")
    if features.height == 0:
        raise ValueError("fit_rescorer: no training rows")
    if not (np.isfinite(targets).all() and (targets >= 0).all() and (targets <= 1).all()):
        raise ValueError("targets must lie in [0, 1]")
    rounds = int(params.pop("num_boost_round", NUM_BOOST_ROUND))
    merged = {**DEFAULT_PARAMS, "seed": seed, **params}
    data = lgb.Dataset(
        features.to_numpy().astype(np.float64),
        label=targets,
        feature_name=list(features.columns),
        params={k: merged[k] for k in ("verbose", "feature_pre_filter") if k in merged},
    )
    return lgb.train(merged, data, num_boost_round=rounds)


def _predict(booster: lightgbm.Booster, features: pl.DataFrame) -> np.ndarray:
    """Predictions on the booster's own columns, by name (a column it needs that the frame
    lacks is an error: the features were prepared differently)."""
    if features.height == 0:
        return np.zeros(0)
    names = booster.feature_name()
    missing = [c for c in names if c not in features.columns]
    if missing:
        raise ValueError(
            f"the rescorer was trained with feature(s) {missing} that these candidates lack; "
            "prepare the same features (prepare.features) as for training"
        )
    return np.asarray(booster.predict(features.select(names).to_numpy().astype(np.float64)))


def rescore_out_of_fold(
    candidates: pl.DataFrame,
    scores: dict[str, np.ndarray],
    manifest: Manifest,
    solution: pl.DataFrame,
    seed: int = 0,
    **params: Any,
) -> pl.DataFrame:
    """The candidates (same rows, same order) with `score` replaced by the rescorer's
    prediction, where fold k's candidates are scored by a model trained on the candidates of
    the other folds only, so their score is as honest as the first stage's OOF score.
    `params` go to `fit_rescorer`."""
    if "fold" not in candidates.columns:
        raise ValueError("rescore_out_of_fold needs the candidates' fold (oof.oof_candidates)")
    fold = candidates["fold"].to_numpy()
    folds = np.unique(fold)
    if folds.size < 2:
        raise ValueError(f"rescore_out_of_fold needs candidates of 2+ folds, got {folds.tolist()}")
    features = candidate_features(candidates, scores, manifest)
    targets = soft_targets(candidates, solution)
    pred = np.zeros(candidates.height)
    for k in folds:
        held = fold == k
        booster = fit_rescorer(features.filter(~held), targets[~held], seed=seed, **params)
        pred[held] = _predict(booster, features.filter(held))
    return candidates.with_columns(score=pl.Series("score", pred, dtype=pl.Float64))
