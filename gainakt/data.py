"""Where a dataset comes from: a pyKT folder or file, or the built-in simulator of students."""

from __future__ import annotations

from pathlib import Path

from .pykt import read_pykt
from .sequences import Dataset
from .synthetic import SyntheticConfig, simulate


def load_dataset(source: str | Path, num_concepts: int | None = None) -> Dataset:
    """Read a pyKT dataset folder or file, or simulate `synthetic[:key=value,...]`."""
    source = str(source)
    if source == "synthetic" or source.startswith("synthetic:"):
        return simulate(SyntheticConfig.parse(source), num_concepts=num_concepts)
    return read_pykt(source, num_concepts)
