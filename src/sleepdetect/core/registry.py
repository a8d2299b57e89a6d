"""Name -> class tables, so a component is added by writing one class and registering it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class UnknownComponentError(KeyError):
    """Raised for a name no class was registered under; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry:
    """A table of components of one kind (feature extractors, decoders, models, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._table:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._table[name] = obj
            return obj

        return add

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._table:
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}"
            )
        return self._table[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table
