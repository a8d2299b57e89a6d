"""Progress bars: text where a widget would show as nothing."""

from __future__ import annotations

import importlib.util

import tqdm.std

from sleepdetect.core import progress


def test_plain_is_text_even_where_widgets_are_installed(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setenv(progress.PLAIN, "1")
    assert progress.bar_class() is tqdm.std.tqdm


def test_without_ipywidgets_no_widget_is_tried(monkeypatch):
    monkeypatch.delenv(progress.PLAIN, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert progress.bar_class() is tqdm.std.tqdm


def test_with_ipywidgets_the_automatic_choice_is_used(monkeypatch):
    import tqdm.auto

    monkeypatch.delenv(progress.PLAIN, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert progress.bar_class() is tqdm.auto.tqdm  # a widget in a kernel, text in a terminal
    with progress.progress(range(3), disable=True) as bar:
        assert list(bar) == [0, 1, 2]
