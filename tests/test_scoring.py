"""The `score` command's readers raise the shared checks of sleepdetect.data.io: an InputError
that names the file, the problem and the fix, worded as `read_events` words it."""

from __future__ import annotations

import pytest

from sleepdetect.core.errors import InputError
from sleepdetect.data.io import read_events
from sleepdetect.events.scoring import read_solution_csv, read_submission_csv

SOLUTION_HEADER = "series_id,night,event,step,timestamp\n"
SUBMISSION_HEADER = "row_id,series_id,step,event,score\n"

# check -> (labels body, submission body, expected message after the path)
CASES = {
    "bad event name": (
        SOLUTION_HEADER + "a,1,onset,10,\na,1,nap,20,\n",
        SUBMISSION_HEADER + "0,a,10,onset,0.5\n1,a,20,nap,0.5\n",
        "column 'event' holds unknown event name 'nap' on line 3 .*valid names: onset, wakeup",
    ),
    "fractional step": (
        SOLUTION_HEADER + "a,1,onset,10,\na,1,wakeup,20.5,\n",
        SUBMISSION_HEADER + "0,a,10,onset,0.5\n1,a,20.5,wakeup,0.5\n",
        "column 'step' must hold whole numbers .*line 3 holds '20.5'.*round the steps",
    ),
    "missing column": (
        "series_id,night,step\na,1,10\n",
        "row_id,series_id,step,score\n0,a,10,0.5\n",
        "column 'event' is missing .*file needs series_id, ",
    ),
    "empty file": ("", "", "file is empty; it needs a header line naming series_id, "),
}
READERS = {"solution": read_solution_csv, "submission": read_submission_csv}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("check", list(CASES))
def test_scoring_readers_raise_the_shared_checks(tmp_path, check, reader):
    solution, submission, expected = CASES[check]
    path = tmp_path / f"{reader}.csv"
    path.write_text(solution if reader == "solution" else submission)
    with pytest.raises(InputError, match=expected) as info:
        READERS[reader](path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize("check", list(CASES))
def test_read_events_words_the_check_the_same_way(tmp_path, check):
    path = tmp_path / "train_events.csv"
    path.write_text(CASES[check][0])
    with pytest.raises(InputError, match=CASES[check][2]) as info:
        read_events(path)
    assert str(info.value).startswith(f"{path}: ")
