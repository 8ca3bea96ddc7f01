"""Cutting a store's compaction short, as a driver killed in the middle of one leaves it."""

from __future__ import annotations

from search.store.segments import Store


class Killed(BaseException):
    """The driver dying at this point: nothing after it runs (not even `except Exception`)."""


class Cut:
    """Counts the store's file writes and removes during a compaction, and dies (raises `Killed`)
    before the one numbered `kill_at` (never, if None)."""

    def __init__(self, store: Store, kill_at: int | None = None) -> None:
        self.done, self.kill_at = 0, kill_at
        write, delete = store.study.write_atomic, store._delete

        def cut_write(path: str, data: bytes) -> None:
            self.step()
            write(path, data)

        def cut_delete(path: str) -> None:
            self.step()
            delete(path)

        store.study.write_atomic, store._delete = cut_write, cut_delete  # type: ignore[method-assign]

    def step(self) -> None:
        if self.done == self.kill_at:
            raise Killed
        self.done += 1
