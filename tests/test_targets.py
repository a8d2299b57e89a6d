"""Targets per model family line up with the events they were built from."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sleepdetect.core.registry import UnknownComponentError
from sleepdetect.data.targets import TARGET_BUILDERS, WindowEvents, build_targets, n_frames

N_STEPS = 777  # not a multiple of the downsample rates below


def night(onset: int, wakeup: int, n_steps: int = N_STEPS) -> WindowEvents:
    return WindowEvents.from_intervals(n_steps, [(onset, wakeup)])


def test_from_intervals_lists_each_end_as_an_event():
    events = WindowEvents.from_intervals(100, [(10, 40), (70, 130)])
    assert events.onsets == (10, 70) and events.wakeups == (40, 130)
    assert events.sleep_intervals == ((10, 40), (70, 130))


@pytest.mark.parametrize("rate", [1, 2, 5])
def test_segmentation_peaks_sit_on_the_event_frames(rate):
    labels = build_targets("segmentation", night(101, 503), rate, sigma=10.0)["labels"]
    assert labels.shape == (math.ceil(N_STEPS / rate), 3) and labels.dtype == np.float32
    assert np.argmax(labels[:, 1]) == 101 // rate and labels[101 // rate, 1] == 1.0
    assert np.argmax(labels[:, 2]) == 503 // rate and labels[503 // rate, 2] == 1.0
    assert labels.min() >= 0.0 and labels.max() <= 1.0


def test_segmentation_peak_width_is_sigma_in_steps():
    sigma, rate = 12.0, 2
    labels = build_targets("segmentation", night(200, 600), rate, sigma=sigma)["labels"]
    for k in (1, 3, 6):  # k frames away = k * rate steps away
        expected = math.exp(-0.5 * (k * rate / sigma) ** 2)
        assert labels[100 + k, 1] == pytest.approx(expected, rel=1e-5)
        assert labels[100 - k, 1] == pytest.approx(expected, rel=1e-5)


def test_sleep_channel_is_the_share_of_each_frame_asleep():
    labels = build_targets("segmentation", night(101, 503), downsample_rate=2, sigma=10.0)["labels"]
    sleep = labels[:, 0]
    assert sleep[49] == 0.0 and sleep[50] == 0.5  # frame 50 = steps 100, 101: only 101 asleep
    assert np.all(sleep[51:251] == 1.0)  # steps 102..501
    assert sleep[251] == 0.5 and sleep[252] == 0.0  # steps 502, 503: the wakeup step is awake
    # the partial last frame (step 776 only) is measured over its one real step
    tail = build_targets("segmentation", night(700, 2000), downsample_rate=2, sigma=10.0)["labels"]
    assert tail[-1, 0] == 1.0


def test_events_outside_the_window_leave_only_their_tails():
    events = WindowEvents(n_steps=100, onsets=(-6,), wakeups=(), sleep_intervals=((-6, 400),))
    labels = build_targets("segmentation", events, downsample_rate=2, sigma=10.0)["labels"]
    assert labels[0, 1] == pytest.approx(math.exp(-0.5 * (6 / 10) ** 2), rel=1e-5)
    assert labels[:, 1].max() < 1.0 and np.all(labels[:, 0] == 1.0)


@pytest.mark.parametrize("rate", [1, 2, 3])
def test_centernet_offsets_recover_the_exact_step(rate):
    events = WindowEvents(
        n_steps=N_STEPS,
        onsets=(100, 401),
        wakeups=(305, 776),
        sleep_intervals=((100, 305), (401, 900)),
    )
    t = build_targets("centernet", events, downsample_rate=rate, sigma=8.0)
    frames = math.ceil(N_STEPS / rate)
    assert {k: v.shape for k, v in t.items()} == {k: (frames, 2) for k in t}
    for column, steps in enumerate((events.onsets, events.wakeups)):
        marked = np.flatnonzero(t["mask"][:, column])
        assert list(marked) == [s // rate for s in steps]
        recovered = (marked + t["offset"][marked, column]) * rate
        np.testing.assert_allclose(recovered, steps, atol=1e-4)
        assert np.all(t["heatmap"][marked, column] == 1.0)
        assert np.all((t["offset"] >= 0) & (t["offset"] < 1))


def test_centernet_size_is_the_sleep_length_at_both_ends():
    events = WindowEvents(
        n_steps=N_STEPS,
        onsets=(100, 600),
        wakeups=(300,),
        sleep_intervals=((100, 300), (600, 1000)),
    )
    t = build_targets("centernet", events, downsample_rate=2, sigma=8.0)
    size = t["size"]
    assert size[50, 0] == pytest.approx(math.log1p(200))  # onset at step 100
    assert size[150, 1] == pytest.approx(math.log1p(200))  # wakeup at step 300
    assert size[300, 0] == pytest.approx(math.log1p(400))
    # the second night's wakeup is beyond the window: only its onset carries a size
    assert t["size_mask"].sum() == 3 and t["size_mask"][:, 1].sum() == 1


def test_detr_set_holds_the_window_events_in_order():
    events = WindowEvents(n_steps=N_STEPS, onsets=(500, -3), wakeups=(120, 777), sleep_intervals=())
    t = build_targets("detr", events, downsample_rate=2, sigma=1.0, max_events=4)
    assert t["event_mask"].tolist() == [True, True, False, False]  # -3 and 777 lie outside
    assert t["event_class"][:2].tolist() == [1, 0]  # wakeup at 120 before onset at 500
    steps = np.round(t["event_position"][:2] * N_STEPS - 0.5)
    assert steps.tolist() == [120, 500]
    assert np.all((t["event_position"][:2] > 0) & (t["event_position"][:2] < 1))


def test_detr_refuses_more_events_than_slots():
    events = WindowEvents(n_steps=100, onsets=(10, 30, 50), wakeups=(20, 40))
    with pytest.raises(ValueError, match="max_events=4"):
        build_targets("detr", events, downsample_rate=1, max_events=4)


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(UnknownComponentError, match="centernet, detr, segmentation"):
        build_targets("boxes", night(1, 2), downsample_rate=2)
    assert TARGET_BUILDERS.names() == ["centernet", "detr", "segmentation"]


def test_bad_sigma_and_rate_fail_clearly():
    with pytest.raises(ValueError, match="sigma"):
        build_targets("segmentation", night(10, 20), downsample_rate=2, sigma=0.0)
    with pytest.raises(ValueError, match="downsample_rate"):
        n_frames(100, 0)


@settings(max_examples=40, deadline=None)
@given(
    n_steps=st.integers(20, 600),
    rate=st.integers(1, 12),
    data=st.data(),
)
def test_every_event_is_a_peak_of_one(n_steps, rate, data):
    onsets = data.draw(st.lists(st.integers(0, n_steps - 1), max_size=3))
    wakeups = data.draw(st.lists(st.integers(0, n_steps - 1), max_size=3))
    events = WindowEvents(n_steps=n_steps, onsets=onsets, wakeups=wakeups)
    seg = build_targets("segmentation", events, downsample_rate=rate, sigma=6.0)["labels"]
    cn = build_targets("centernet", events, downsample_rate=rate, sigma=6.0)
    assert seg.shape[0] == cn["heatmap"].shape[0] == -(-n_steps // rate)
    for column, steps in ((1, onsets), (2, wakeups)):
        for s in steps:
            assert seg[s // rate, column] == 1.0
            assert cn["heatmap"][s // rate, column - 1] == 1.0
        assert (seg[:, column] == 1.0).sum() == len({s // rate for s in steps})
