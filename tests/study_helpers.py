"""Test helpers for studies written through the store."""

from __future__ import annotations

from fake_study import fake_study

from search.store.segments import Store
from search.store.study import Study

__all__ = ["fake_study", "put_trial_like"]


def put_trial_like(study: Study, trial_id: str, **changes) -> None:
    """Store a copy of one of the study's trial rows under `trial_id`, with `changes` (e.g. its status)."""
    store = Store(study)
    store.put_trial({**next(iter(store.trial_rows().values())), "trial_id": trial_id, **changes})
