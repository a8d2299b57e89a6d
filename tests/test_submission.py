"""The submission writer: checks first, then one atomic write; bad candidates never reach disk."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sleepdetect.core.errors import InputError
from sleepdetect.events.metric import event_detection_ap
from sleepdetect.events.postprocess import detect_events
from sleepdetect.events.scoring import read_submission_csv
from sleepdetect.events.submission import COLUMNS, write_submission


def candidates(**overrides) -> pl.DataFrame:
    data = {
        "series_id": ["a", "a", "b"],
        "step": [10, 20, 5],
        "event": ["onset", "wakeup", "onset"],
        "score": [0.9, 0.5, 0.1],
    }
    data.update(overrides)
    return pl.DataFrame(data)


def test_writes_columns_in_order_with_row_ids(tmp_path):
    path = write_submission(candidates(), tmp_path / "submission.csv", {"a": 100, "b": 10})
    out = pl.read_csv(path)
    assert out.columns == list(COLUMNS)
    assert out["row_id"].to_list() == [0, 1, 2]
    assert out["step"].to_list() == [10, 20, 5]
    assert out["score"].to_list() == [0.9, 0.5, 0.1]


def test_given_row_ids_are_replaced_and_float_steps_that_are_whole_kept(tmp_path):
    df = candidates(step=[10.0, 20.0, 5.0]).with_columns(row_id=pl.Series([7, 7, 9]))
    out = pl.read_csv(write_submission(df, tmp_path / "s.csv"))
    assert out["row_id"].to_list() == [0, 1, 2]
    assert out.schema["step"] == pl.Int64


def test_empty_submission_is_a_header(tmp_path):
    empty = detect_events(np.zeros((100, 2)), "a")
    path = write_submission(empty, tmp_path / "s.csv", {"a": 100})
    assert path.read_text() == ",".join(COLUMNS) + "\n"
    # ... which scores 0, not an error.
    sol = pl.DataFrame({"series_id": ["a"], "event": ["onset"], "step": [50]})
    assert event_detection_ap(sol, read_submission_csv(path)) == 0.0


def test_round_trip_scores_like_the_frame(tmp_path):
    df = candidates()
    sol = pl.DataFrame({"series_id": ["a", "b"], "event": ["onset", "onset"], "step": [12, 400]})
    path = write_submission(df, tmp_path / "s.csv")
    assert event_detection_ap(sol, read_submission_csv(path)) == event_detection_ap(sol, df)


@pytest.mark.parametrize(
    ("df", "lengths", "message"),
    [
        (candidates().drop("score"), None, "column 'score' is missing"),
        (candidates(event=["onset", "sleep", "onset"]), None, "'sleep' at row 1.*onset, wakeup"),
        (candidates(score=[0.9, float("nan"), 0.1]), None, "'score' holds nan at row 1.*finite"),
        (candidates(score=[0.9, float("inf"), 0.1]), None, "'score' holds inf"),
        (candidates(score=[0.9, None, 0.1]), None, "'score' has 1 missing value.*row 1"),
        (candidates(step=[10.0, 20.5, 5.0]), None, "20.5 at row 1, not a whole step"),
        (candidates(step=[10, -1, 5]), None, "-1 at row 1; steps start at 0"),
        (candidates(step=["10", "20", "5"]), None, "'step' is String"),
        (candidates(), {"a": 100, "b": 5}, "step 5 \\(row 2\\).*'b', which has 5 steps"),
        (candidates(), {"a": 100}, "series 'b' \\(row 2\\) is not among"),
    ],
)
def test_bad_candidates_are_rejected_and_nothing_is_written(tmp_path, df, lengths, message):
    path = tmp_path / "submission.csv"
    with pytest.raises(InputError, match=message):
        write_submission(df, path, lengths)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = write_submission(candidates(), tmp_path / "submission.csv")
    before = path.read_text()
    with pytest.raises(InputError):
        write_submission(candidates(event=["onset", "nap", "onset"]), path)
    assert path.read_text() == before
