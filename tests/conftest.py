"""Shared fixtures: the real ASSIST2015 data from ../shared when it is there, small simulated data always."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gainakt.data import Dataset, load_dataset

REPO = Path(__file__).resolve().parents[1]
ASSIST2015 = REPO.parent / "shared" / "data" / "assist2015"


@pytest.fixture(scope="session")
def assist_dir() -> Path:
    if not (ASSIST2015 / "train_valid.csv").is_file():
        pytest.skip(f"real data not found at {ASSIST2015} (only the project's own checkout has ../shared)")
    return ASSIST2015


@pytest.fixture(scope="session")
def assist(assist_dir: Path) -> Dataset:
    return load_dataset(assist_dir)


@pytest.fixture(scope="session")
def small_synthetic() -> Dataset:
    return load_dataset("synthetic:students=300,concepts=20,seed=3")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is faster and immune to a busy machine; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
