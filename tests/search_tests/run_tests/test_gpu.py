"""Trials on a real CUDA GPU (skipped without one): four share it at a quarter each. The module asks
for no shared Ray, so the sweep starts a local Ray of the --num-cpus it asks for."""

from __future__ import annotations

import pytest
import torch
from sweep_helpers import most_at_once, sweep_argv, tables

from search.cli import main

pytestmark = pytest.mark.slow


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (four trials share one at 0.25 GPU each)"
)
def test_four_trials_share_one_gpu_and_the_trial_table_says_so(tmp_path):
    assert (
        main(
            sweep_argv(
                tmp_path,
                "gpu",
                8,
                3,
                "--num-cpus",
                "4",
                "--gpus",
                "0.25",
                "--concurrent",
                "4",
                "--no-constraints",
            )
        )
        == 0
    )
    trials, _ = tables(tmp_path, "gpu")
    assert (trials["status"] == "COMPLETED").sum() == 8
    assert all(device.startswith("cuda") for device in trials["device"])
    assert most_at_once(trials) == 4
