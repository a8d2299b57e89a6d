"""The three model registries: a component is one class registered under its public name.

Registration happens on import; each package imports all of its modules (see `import_all`), so
a new file with a registered class needs no other edit. Components defined outside the package
(a notebook, a plugin) register the same way before `build_model` is called.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

from sleepdetect.core.registry import Registry

FEATURE_EXTRACTORS = Registry("feature extractor")
DECODERS = Registry("decoder")
MODELS = Registry("model")


def import_all(package_name: str, package_path: Iterable[str]) -> None:
    """Import every module of a package so that the classes in it register themselves."""
    for info in pkgutil.iter_modules(list(package_path)):
        importlib.import_module(f"{package_name}.{info.name}")
