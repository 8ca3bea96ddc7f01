"""Named starting points for a run's settings, written as a TOML file of settings would be
(`gainakt.train.make_config` builds and validates them, so a renamed setting fails there)."""

from __future__ import annotations

from typing import Any

DEFAULT_PRESET = "cpu-small"  # what a run and a sweep start from unless told otherwise

PRESETS: dict[str, dict[str, Any]] = {
    # Sized for a two-core CPU. Batches of 32 give twice the optimiser steps per epoch (and less
    # padding); halving the learning rate every epoch lets the best epoch settle instead of
    # overfitting at 1e-3 (ASSIST2015 fold 0, best validation AUC 0.7213 -> 0.7234); weight decay
    # 1e-5 adds the rest (0.7255, benchmarks/train_assist2015.py).
    "cpu-small": {
        "batch_size": 32,
        "scheduler": "step",
        "step_size": 1,
        "gamma": 0.5,
        "epochs": 8,
        "weight_decay": 1e-5,
    },
    # The monitored trainer's published setting.
    "monitored": {
        "epochs": 15,
        "scheduler": "step",
        "model": {"d_model": 256, "heads": 8, "blocks": 4, "d_ff": 512},
        "weights": {"non_negative": 0.1, "consistency": 0.05},
        "monitor_interval": 25,
    },
    # The original's training script.
    "paper": {
        "model": {"d_model": 512, "heads": 8, "blocks": 6, "d_ff": 1024, "dropout": 0.2},
        "lr": 1.74e-4,
        "weight_decay": 1.76e-5,
        "batch_size": 64,
    },
}
