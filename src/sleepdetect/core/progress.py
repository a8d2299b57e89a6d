"""Progress bars that suit where they are shown: a widget in Jupyter, plain text in terminals
and in `sleepdetect run` (papermill prints the kernel's text output; a widget would show there
as nothing, and as an empty box in the executed notebook).

No Lightning here: inference uses it in the Kaggle kernel.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from typing import Any

from tqdm.std import tqdm as text_tqdm

PLAIN = "SLEEPDETECT_PLAIN_PROGRESS"
"""Set to 1 (as `sleepdetect run` does for its notebooks) for text bars even in a kernel."""


def bar_class() -> type:
    """tqdm's notebook bar in a Jupyter kernel that has ipywidgets (`make lab`), else its text
    bar; never the 'IProgress not found' fallback warning."""
    if os.environ.get(PLAIN) != "1" and importlib.util.find_spec("ipywidgets") is not None:
        # here, not above: tqdm.auto picks its bar at import, and the widget needs the `lab`
        # extra's ipywidgets
        from tqdm.auto import tqdm  # the widget inside a kernel, text in a terminal

        return tqdm
    return text_tqdm


def progress(iterable: Iterable | None = None, **kwargs: Any) -> Any:
    """`tqdm(iterable, **kwargs)` of the class that suits where it is shown."""
    return bar_class()(iterable, **kwargs)
