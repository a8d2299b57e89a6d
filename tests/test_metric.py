"""The fast metric equals the plain-loop oracle (tests/metric_oracle.py) on thousands of random
cases, and a few cases computed by hand; plus the `score` command and its CSV checks."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metric_oracle import oracle_ap_table
from sleepdetect import cli
from sleepdetect.core.errors import InputError
from sleepdetect.events.metric import (
    TOLERANCES,
    PreparedSolution,
    _sort_keys,
    event_detection_ap,
    event_detection_ap_table,
    match_detections,
)
from sleepdetect.events.scoring import read_solution_csv, read_submission_csv, score_command

EVENTS = ["onset", "wakeup"]
SERIES = ["s1", "s2", "s3"]
SOL_SCHEMA = {"series_id": pl.String, "event": pl.String, "step": pl.Int64}
SUB_SCHEMA = {"series_id": pl.String, "step": pl.Float64, "event": pl.String, "score": pl.Float64}


def fast(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def solution(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SOL_SCHEMA, orient="row")


def submission(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SUB_SCHEMA, orient="row")


def assert_same_as_oracle(sol: pl.DataFrame, sub: pl.DataFrame, tolerances=None) -> None:
    table, score = event_detection_ap_table(sol, sub, tolerances)
    want_table, want = oracle_ap_table(sol, sub, tolerances)
    got_table = {(e, t): ap for e, t, ap in table.iter_rows()}
    assert got_table.keys() == want_table.keys()
    for key, ap in want_table.items():
        assert got_table[key] == pytest.approx(ap, abs=1e-9), key
    assert score == pytest.approx(want, abs=1e-9)


# ---------------------------------------------------------------- random cases vs the oracle


@st.composite
def cases(draw, max_gt: int = 12, max_det: int = 40, span: int | None = None):
    """Steps on a 6-step grid, so distances equal to a tolerance (all multiples of 6) are
    common; scores from a small set in half the cases, so ties are common."""
    n_series = draw(st.integers(1, len(SERIES)))
    gt_events = draw(st.sampled_from([["onset"], ["wakeup"], EVENTS]))
    span = span if span is not None else draw(st.sampled_from([10, 60, 300, 3000]))
    gt_rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(SERIES[:n_series]),
                st.sampled_from(gt_events),
                st.one_of(st.integers(0, span).map(lambda x: 6 * x), st.none())
                if draw(st.booleans())
                else st.integers(0, span).map(lambda x: 6 * x),
            ),
            min_size=1,
            max_size=max_gt,
        )
    )
    if all(r[2] is None for r in gt_rows):
        gt_rows.append((SERIES[0], gt_events[0], 0))
    labelled = [r for r in gt_rows if r[2] is not None]

    det_events = draw(st.sampled_from([["onset"], ["wakeup"], EVENTS]))
    tied = draw(st.booleans())
    score = st.sampled_from([0.1, 0.25, 0.5, 1.0]) if tied else st.floats(0, 1, width=32)
    # Near a label (offsets up to 70 x 6 = 420 steps, past the largest tolerance), or anywhere,
    # in any series (s3 and zz may have no labels), with the odd missing value.
    near = st.tuples(st.sampled_from(labelled), st.integers(-70, 70)).map(
        lambda t: (t[0][0], float(t[0][2] + 6 * t[1]))
    )
    anywhere = st.tuples(
        st.sampled_from(SERIES + ["zz"]), st.integers(0, span).map(lambda x: 6.0 * x)
    )
    det = st.tuples(st.one_of(near, anywhere), st.sampled_from(det_events), score).map(
        lambda t: (t[0][0], t[0][1], t[1], t[2])
    )
    det_rows = draw(st.lists(det, max_size=max_det))
    if det_rows and draw(st.integers(0, 9)) == 0:  # a missing step or score
        i = draw(st.integers(0, len(det_rows) - 1))
        s, step, e, sc = det_rows[i]
        det_rows[i] = (s, None, e, sc) if draw(st.booleans()) else (s, step, e, float("nan"))
    if det_rows and draw(st.integers(0, 4)) == 0:  # exact duplicates
        det_rows += draw(st.lists(st.sampled_from(det_rows), max_size=5))
    return solution(gt_rows), submission(det_rows)


@fast(1500)
@given(cases())
def test_matches_oracle(case):
    assert_same_as_oracle(*case)


@fast(500)
@given(cases(max_gt=40, max_det=80, span=40))
def test_matches_oracle_crowded(case):
    """Labels a few steps apart: detections with several labels in reach, long greedy chains."""
    assert_same_as_oracle(*case)


@fast(300)
@given(
    cases(),
    st.lists(st.integers(1, 100).map(lambda x: 6 * x), min_size=1, max_size=4, unique=True),
)
def test_matches_oracle_other_tolerances(case, tolerances):
    assert_same_as_oracle(*case, tolerances=tolerances)


@fast(200)
@given(cases(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(case, rnd):
    sol, sub = case
    order = list(range(sub.height))
    rnd.shuffle(order)
    assert event_detection_ap(sol, sub[order]) == pytest.approx(
        event_detection_ap(sol, sub), abs=1e-12
    )


@fast(200)
@given(cases())
def test_extra_lowest_scored_candidates_never_lower_ap(case):
    """DESIGN.md: 'extra low-scored candidates never lower AP'."""
    sol, sub = case
    extra = submission([("s1", 6.0 * i, e, -1.0) for i in range(0, 300, 7) for e in EVENTS])
    assert event_detection_ap(sol, pl.concat([sub, extra])) >= event_detection_ap(sol, sub) - 1e-12


def test_large_random_case_matches_oracle():
    """One case of realistic size (a few thousand detections, 20 series)."""
    rng = np.random.default_rng(3)
    series = [f"s{i}" for i in range(20)]
    gt = [
        (s, e, int(d * 17280 + rng.integers(-2000, 2000)) // 12 * 12)
        for s in series
        for d in range(1, 8)
        for e in EVENTS
    ]
    sol = solution(gt)
    det = []
    for s, e, step in gt:
        for scale in (6, 30, 120, 600):
            for _ in range(6):
                det.append((s, float(round(step + rng.normal(0, scale))), e, float(rng.random())))
    for _ in range(1000):
        det.append(
            (
                str(rng.choice(series + ["x"])),
                float(rng.integers(0, 9 * 17280)),
                str(rng.choice(EVENTS)),
                float(rng.random() * 0.5),
            )
        )
    assert_same_as_oracle(sol, submission(det))


# ---------------------------------------------------------------- computed by hand

GT = [("a", "onset", 1000), ("a", "wakeup", 5000), ("b", "onset", 20000), ("b", "wakeup", 26000)]


def test_perfect_submission_scores_one():
    sub = submission([(s, float(step), e, 1.0) for s, e, step in GT])
    table, score = event_detection_ap_table(solution(GT), sub)
    assert score == 1.0
    assert table.height == 2 * len(TOLERANCES)
    assert table["ap"].to_list() == [1.0] * 20


def test_empty_submission_scores_zero():
    assert event_detection_ap(solution(GT), submission([])) == 0.0


def test_false_positive_ranked_first_halves_precision():
    # One label per event; a wrong detection scored above the right one: AP = 1 x 1/2.
    sol = solution([("a", "onset", 1000)])
    sub = submission([("a", 50000.0, "onset", 0.9), ("a", 1000.0, "onset", 0.5)])
    assert event_detection_ap(sol, sub) == pytest.approx(0.5)


def test_distance_equal_to_the_tolerance_does_not_match():
    sol = solution([("a", "onset", 1000)])
    sub = submission([("a", 1012.0, "onset", 1.0)])  # 12 away: misses 12, hits 36 and up
    table, score = event_detection_ap_table(sol, sub)
    assert table.filter(pl.col("tolerance") == 12)["ap"].item() == 0.0
    assert table.filter(pl.col("tolerance") == 36)["ap"].item() == 1.0
    assert score == pytest.approx(0.9)


def test_series_without_labels_are_ignored_not_false_positives():
    sub = submission([(s, float(step), e, 0.5) for s, e, step in GT])
    noise = submission([("unlabelled", 10.0 * i, e, 0.99) for i in range(50) for e in EVENTS])
    assert event_detection_ap(solution(GT), pl.concat([sub, noise])) == 1.0


def test_event_types_absent_from_the_labels_are_ignored():
    sol = solution([("a", "onset", 1000)])
    sub = submission([("a", 1000.0, "onset", 0.5), ("a", 3000.0, "wakeup", 0.9)])
    table, score = event_detection_ap_table(sol, sub)
    assert table["event"].unique().to_list() == ["onset"]
    assert score == 1.0


def test_rows_with_missing_values_are_dropped():
    sol = solution([("a", "onset", 1000), ("a", "wakeup", None)])  # an unlabelled night
    sub = submission(
        [
            ("a", 1000.0, "onset", 0.5),
            ("a", None, "onset", 0.9),
            ("a", 9.0, "onset", None),
            ("a", 7.0, "onset", float("nan")),
        ]
    )
    assert event_detection_ap(sol, sub) == 1.0


def test_equal_distances_go_to_the_earlier_label():
    # Labels 100 and 124; d1 (112) is 12 from both and takes 100; d2 (140) then takes 124
    # (16 away). Had d1 taken 124, d2 would be 40 from 100: a miss at tolerance 36.
    sol = solution([("a", "onset", 100), ("a", "onset", 124)])
    sub = submission([("a", 112.0, "onset", 0.9), ("a", 140.0, "onset", 0.5)])
    assert event_detection_ap(sol, sub, tolerances=[36]) == 1.0


@pytest.mark.parametrize("reverse", [False, True])
def test_equal_scores_are_walked_in_step_order(reverse):
    # Labels 100 and 130, tolerance 36, both detections scored 0.5. In step order, 90 takes
    # 100 and 115 takes 130 (AP 1). The other order would let 115 take 100 (15 from both: the
    # earlier) and leave 90 40 away from 130 (AP 0.25). Row order must not matter.
    rows = [("a", 90.0, "onset", 0.5), ("a", 115.0, "onset", 0.5)]
    sub = submission(rows[::-1] if reverse else rows)
    sol = solution([("a", "onset", 100), ("a", "onset", 130)])
    assert event_detection_ap(sol, sub, tolerances=[36]) == 1.0


def test_duplicate_detections_count_once_as_true_positive():
    sol = solution([("a", "onset", 1000)])
    sub = submission([("a", 1000.0, "onset", 0.5)] * 3)
    # One threshold: 1 TP + 2 FP -> precision 1/3 at recall 1.
    assert event_detection_ap(sol, sub) == pytest.approx(1 / 3)


def test_pandas_frames_are_accepted():
    pd = pytest.importorskip("pandas")
    sol = pd.DataFrame(GT, columns=["series_id", "event", "step"])
    sub = pd.DataFrame(
        [(s, step, e, 1.0) for s, e, step in GT], columns=["series_id", "step", "event", "score"]
    )
    assert event_detection_ap(sol, sub) == 1.0


def test_solution_without_any_step_is_rejected():
    with pytest.raises(ValueError, match="no event with a step"):
        event_detection_ap(solution([("a", "onset", None)]), submission([]))


def test_fractional_steps_are_rejected():
    sub = submission([("a", 1000.5, "onset", 0.5)])
    with pytest.raises(ValueError, match="1000.5, not a whole number"):
        event_detection_ap(solution(GT), sub)


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="score"):
        event_detection_ap(solution(GT), submission([]).drop("score"))


# ---------------------------------------------------------------- the `score` command

SOLUTION_CSV = """series_id,night,event,step,timestamp
a,1,onset,1000,2018-08-14T22:26:00-0400
a,1,wakeup,5000,2018-08-15T06:41:00-0400
a,2,onset,,
a,2,wakeup,,
b,1,onset,20000,2018-08-14T22:26:00-0400
b,1,wakeup,26000,2018-08-15T06:41:00-0400
"""
SUBMISSION_CSV = """row_id,series_id,step,event,score
0,a,1000,onset,0.9
1,a,5030,wakeup,0.8
2,b,19990,onset,0.7
3,b,30000,wakeup,0.6
4,b,26000,wakeup,0.3
5,zz,100,onset,0.99
"""


@pytest.fixture
def csvs(tmp_path):
    sol, sub = tmp_path / "solution.csv", tmp_path / "submission.csv"
    sol.write_text(SOLUTION_CSV)
    sub.write_text(SUBMISSION_CSV)
    return sol, sub


def test_score_command_prints_table_then_score_last(csvs, capsys):
    assert score_command(*csvs) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = event_detection_ap(read_solution_csv(csvs[0]), read_submission_csv(csvs[1]))
    assert float(lines[-1]) == pytest.approx(expected, abs=1e-6)
    assert lines[-1] == f"{expected:.6f}"
    assert any(line.startswith("onset") for line in lines)
    assert any(line.startswith("wakeup") for line in lines)
    assert 0 < expected < 1


def test_cli_score_last_line_is_the_score(csvs, capsys):
    assert cli.main(["score", str(csvs[0]), str(csvs[1])]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(last) == pytest.approx(
        event_detection_ap(read_solution_csv(csvs[0]), read_submission_csv(csvs[1])), abs=1e-6
    )


def test_python_dash_m_sleepdetect_score(csvs):
    done = subprocess.run(
        [sys.executable, "-m", "sleepdetect", "score", str(csvs[0]), str(csvs[1])],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert math.isfinite(float(done.stdout.strip().splitlines()[-1]))


def test_python_dash_m_sleepdetect_score_bad_file_exits_2(tmp_path, csvs):
    bad = tmp_path / "bad.csv"
    bad.write_text("series_id,step,event\na,1,onset\n")
    done = subprocess.run(
        [sys.executable, "-m", "sleepdetect", "score", str(csvs[0]), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "'score'" in done.stderr


def test_real_labels_score_one_against_themselves(real_data_dir, capsys):
    labels = real_data_dir / "train_events.csv"
    sol = read_solution_csv(labels)
    sub = sol.drop_nulls("step").with_columns(pl.lit(1.0).alias("score"))
    assert event_detection_ap(sol, sub) == 1.0


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        ("series_id,step,event\na,1,onset\n", "column 'score' is missing.*needs series_id"),
        (
            "row_id,series_id,step,event,score\n0,a,ten,onset,0.5\n",
            "'step' must be numeric.*line 2.*'ten'",
        ),
        (
            "row_id,series_id,step,event,score\n0,a,1,onset,0.5\n1,a,2,onset,high\n",
            "'score' must be numeric.*line 3.*'high'",
        ),
        (
            "row_id,series_id,step,event,score\n0,a,1,onset,0.5\n1,a,12.5,onset,0.5\n",
            "'step' must hold whole numbers.*line 3.*'12.5'",
        ),
        ("row_id,series_id,step,event,score\n0,a,1,Onset,0.5\n", "unknown event name 'Onset'"),
    ],
)
def test_bad_submission_csv(tmp_path, csvs, text, expected):
    path = write(tmp_path, "sub.csv", text)
    with pytest.raises(InputError, match=expected) as info:
        score_command(csvs[0], path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        ("series_id,night,step\na,1,5\n", "column 'event' is missing.*needs series_id"),
        ("series_id,event,step\na,onset,\n", "no row has a step"),
        ("series_id,event,step\n", "no row has a step"),
        ("series_id,event,step\na,onset,5x\n", "'step' must be numeric.*'5x'"),
        ("series_id,event,step\na,sleep,5\n", "unknown event name 'sleep'"),
    ],
)
def test_bad_solution_csv(tmp_path, csvs, text, expected):
    path = write(tmp_path, "sol.csv", text)
    with pytest.raises(InputError, match=expected) as info:
        score_command(path, csvs[1])
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path, csvs):
    with pytest.raises(InputError, match="not found"):
        score_command(tmp_path / "nope.csv", csvs[1])


def test_header_only_submission_scores_zero(tmp_path, csvs, capsys):
    path = write(tmp_path, "sub.csv", "row_id,series_id,step,event,score\n")
    assert score_command(csvs[0], path) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "0.000000"


def test_pooled_series_score_like_the_metric_on_copies():
    """MatchedDetections.table(counts) equals the metric on a solution in which each series
    appears counts times (under new names), as a bootstrap over series needs."""
    rng = np.random.default_rng(4)
    sol = pl.DataFrame(
        {
            "series_id": ["a", "a", "b", "b", "c", "c"],
            "event": ["onset", "wakeup"] * 3,
            "step": [100, 900, 300, 1200, 50, 700],
        }
    )
    sub = pl.DataFrame(
        {
            "series_id": rng.choice(["a", "b", "c"], 60).tolist(),
            "step": rng.integers(0, 1400, 60),
            "event": rng.choice(["onset", "wakeup"], 60).tolist(),
            "score": rng.random(60),
        }
    )
    matched = match_detections(sol, sub)
    assert matched.table()[1] == pytest.approx(event_detection_ap(sol, sub), abs=1e-12)
    counts = np.array([2, 0, 1])  # a twice, b left out, c once
    copies = [("a", 0), ("a", 1), ("c", 0)]
    rename = lambda f: pl.concat(  # noqa: E731
        f.filter(pl.col("series_id") == s).with_columns(series_id=pl.lit(f"{s}{i}"))
        for s, i in copies
    )
    expected = event_detection_ap(rename(sol), rename(sub))
    assert matched.table(counts)[1] == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- the batched entry


def assert_same_tables(got: tuple[pl.DataFrame, float], want: tuple[pl.DataFrame, float]) -> None:
    """Exactly the same: the batched entry computes the very same numbers."""
    assert got[0].equals(want[0])
    assert got[1] == want[1] or (math.isnan(got[1]) and math.isnan(want[1]))


@fast(400)
@given(cases())
def test_prepared_solution_equals_the_plain_call_and_the_oracle(case):
    """Random cases include series without ground truth (s3, zz), empty submissions, event
    types without detections and labels without any detection near them."""
    sol, sub = case
    prepared = PreparedSolution(sol)
    assert_same_tables(prepared.table(sub), event_detection_ap_table(sol, sub))
    assert prepared.score(sub) == event_detection_ap(sol, sub)
    want_table, want = oracle_ap_table(sol, sub)
    assert prepared.score(sub) == pytest.approx(want, abs=1e-9)


@fast(150)
@given(cases(max_gt=40, max_det=80, span=40), st.lists(st.integers(1, 60).map(lambda x: 6 * x)))
def test_prepared_solution_crowded_and_other_tolerances(case, tolerances):
    sol, sub = case
    tolerances = tolerances or None
    got = PreparedSolution(sol, tolerances).table(sub)
    assert_same_tables(got, event_detection_ap_table(sol, sub, tolerances))
    assert got[1] == pytest.approx(oracle_ap_table(sol, sub, tolerances)[1], abs=1e-9)


@fast(100)
@given(st.data())
def test_one_prepared_solution_scores_many_submissions_like_fresh_calls(data):
    """No state leaks between calls: every submission, in any order, repeated or not, gets the
    answer of a fresh plain call (and so do the weighted tables of its matches)."""
    sol, first = data.draw(cases())
    others = [data.draw(cases())[1] for _ in range(3)]
    subs = [first, submission([]), *others, first]
    prepared = PreparedSolution(sol)
    for sub in subs + subs[::-1]:
        assert_same_tables(prepared.table(sub), event_detection_ap_table(sol, sub))
    counts = np.array(data.draw(st.lists(st.integers(0, 2), min_size=3, max_size=3)))
    counts = counts[: len(prepared.series)]
    for sub in subs:
        batched = prepared.match(sub)
        fresh = match_detections(sol, sub)
        assert_same_tables(batched.table(counts), fresh.table(counts))
        assert batched.score(counts) == fresh.table(counts)[1] or math.isnan(fresh.table(counts)[1])


@fast(150)
@given(cases(), st.lists(st.integers(0, 3), min_size=3, max_size=3))
def test_weighted_table_equals_the_metric_on_copies(case, counts):
    """table(counts) on random cases: the metric with each series copied counts times."""
    sol, sub = case
    matched = match_detections(sol, sub)
    counts = np.array(counts[: len(matched.series)])
    copies = [(s, i) for s, c in zip(matched.series, counts, strict=True) for i in range(c)]
    if not copies:
        assert math.isnan(matched.score(counts))
        return

    def rename(frame):
        return pl.concat(
            frame.filter(pl.col("series_id") == s).with_columns(series_id=pl.lit(f"{s}#{i}"))
            for s, i in copies
        )

    renamed_sol = rename(sol)
    if renamed_sol.drop_nulls("step").height == 0:
        return
    table, score = matched.table(counts)
    want_table, want = event_detection_ap_table(renamed_sol, rename(sub))
    assert table["ap"].to_list() == pytest.approx(want_table["ap"].to_list(), abs=1e-12)
    assert score == pytest.approx(want, abs=1e-12)
    assert matched.score(counts) == score


def test_prepared_solution_without_detections_in_any_labelled_series():
    prepared = PreparedSolution(solution(GT))
    assert prepared.score(submission([])) == 0.0
    only_elsewhere = submission([("unlabelled", 1000.0, "onset", 0.9)])
    assert prepared.score(only_elsewhere) == 0.0
    table, score = prepared.table(submission([("a", 1000.0, "onset", 0.9)]))
    # onset of a found (1 of 2 onsets), wakeup nothing
    assert table.filter(pl.col("event") == "onset")["ap"].to_list() == [0.5] * 10
    assert table.filter(pl.col("event") == "wakeup")["ap"].to_list() == [0.0] * 10
    assert score == 0.25


def test_far_away_steps_are_out_of_reach_not_an_error():
    """Detection steps far beyond the labels (even infinite) are clipped out of every reach."""
    sol = solution([("a", "onset", 1000)])
    sub = submission(
        [
            ("a", 1000.0, "onset", 0.5),
            ("a", 1e18, "onset", 0.9),
            ("a", float("inf"), "onset", 0.8),
            ("a", -1e18, "onset", 0.7),
        ]
    )
    assert event_detection_ap(sol, sub) == pytest.approx(oracle_ap_table(sol, sub)[1])
    assert event_detection_ap(sol, sub) == pytest.approx(0.25)


BAD_SUBMISSIONS = [
    (submission([]).drop("score"), ValueError, "submission lacks column.*score"),
    (submission([("a", 1000.5, "onset", 0.5)]), ValueError, "1000.5, not a whole number"),
    (
        pl.DataFrame({"series_id": ["a"], "step": ["ten"], "event": ["onset"], "score": [0.5]}),
        ValueError,
        "step and score must be numeric",
    ),
    ([("a", 1000, "onset", 0.5)], TypeError, "submission must be a polars or pandas DataFrame"),
]


@pytest.mark.parametrize(("bad", "error", "message"), BAD_SUBMISSIONS)
def test_bad_submissions_raise_the_same_errors_through_both_entries(bad, error, message):
    prepared = PreparedSolution(solution(GT))
    with pytest.raises(error, match=message) as plain:
        event_detection_ap(solution(GT), bad)
    for call in (prepared.score, prepared.table, prepared.match):
        with pytest.raises(error, match=message) as batched:
            call(bad)
        assert str(batched.value) == str(plain.value)
    # and the prepared solution still scores afterwards
    assert prepared.score(submission([(s, float(t), e, 1.0) for s, e, t in GT])) == 1.0


@pytest.mark.parametrize(
    ("bad", "tolerances", "message"),
    [
        (solution([("a", "onset", None)]), None, "no event with a step"),
        (solution(GT).drop("step"), None, "solution lacks column.*step"),
        (solution(GT), [], "non-empty list of positive finite numbers"),
        (solution(GT), [12, -1], "non-empty list of positive finite numbers"),
        (solution(GT), {"onset": [12]}, "no tolerances given.*wakeup"),
    ],
)
def test_bad_solutions_raise_the_same_errors_through_both_entries(bad, tolerances, message):
    with pytest.raises(ValueError, match=message) as plain:
        event_detection_ap(bad, submission([]), tolerances)
    with pytest.raises(ValueError, match=message) as batched:
        PreparedSolution(bad, tolerances)
    assert str(batched.value) == str(plain.value)


@pytest.mark.parametrize("bound", [2**20, 2**62])  # packed into one sort / argsort + gather
def test_sort_keys_returns_the_sorted_keys_and_their_order(bound):
    rng = np.random.default_rng(5)
    key = rng.integers(0, min(bound, 2**40), 1000)
    key[::7] = key[0]  # ties
    got_key, order = _sort_keys(key, bound)
    assert (got_key == np.sort(key)).all()
    assert (key[order] == got_key).all()
    assert sorted(order.tolist()) == list(range(key.size))
    empty_key, empty_order = _sort_keys(np.empty(0, np.int64), bound)
    assert empty_key.size == empty_order.size == 0
