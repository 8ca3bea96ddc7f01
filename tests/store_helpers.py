"""Cutting a store's compaction short, as a driver killed in the middle of one leaves it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from search.store import generations
from search.store.segments import Store

# The steps of a local compaction's swap of generations (search/store/generations.py).
SWAP_STEPS = ("_keep", "_write", "_point", "_remove")


class Killed(BaseException):
    """The driver dying at this point: nothing after it runs (not even `except Exception`)."""


class Cut:
    """Counts the steps of a compaction, each file it writes, links or removes and the swap of a
    folder's generation, and dies (raises `Killed`) before the one numbered `kill_at` (never, if
    None). A context manager: the steps are counted inside it."""

    def __init__(self, store: Store, kill_at: int | None = None) -> None:
        self.done, self.kill_at, self.store = 0, kill_at, store
        self._saved: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> Cut:
        store = self.store
        store.study.write_atomic = self._counted(store.study.write_atomic)  # type: ignore[method-assign]
        store._delete = self._counted(store._delete)  # type: ignore[method-assign]
        for name in SWAP_STEPS:
            self._saved[name] = getattr(generations, name)
            setattr(generations, name, self._counted(self._saved[name]))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, step in self._saved.items():
            setattr(generations, name, step)
        del self.store.study.write_atomic, self.store._delete  # the class's own again

    def _counted(self, step: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            if self.done == self.kill_at:
                raise Killed
            self.done += 1
            return step(*args)

        return counted
