"""A made-up study written directly through the store (no Ray, no training), for trying the
reading commands and the report, for their tests and for the report benchmark.

Its rows have the columns the recorder writes (the README's trial and epoch tables), with random
objective values, some feasible trials, an errored one and one with a NaN objective.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from gainakt import schema
from gainakt.data import load_dataset
from gainakt.schema import LOSS_NAMES
from search.schema import FEASIBLE, GUARANTEED, TrialStatus, fixed_metrics, param_column, violation_column
from search.spec import SweepSpec
from search.store.segments import SEGMENT_TRIALS, Schemas, Store
from search.store.study import Study
from search.store.tables import trial_schema


def fake_study(
    storage: Path,
    name: str,
    trials: int,
    epochs: int = 3,
    seed: int = 0,
    nan_trial: bool = True,
    segments: bool = False,
) -> Study:
    """Write a study of `trials` trials (the last one ERROR, the one before it with a NaN
    mastery_corr): each trial's files as a driver writes them, or with `segments` the settled
    trials straight into segments, as a driver's compaction leaves them (quick for large studies)."""
    spec = SweepSpec(name=name, storage=str(storage), trials=trials, data="synthetic:students=300,seed=3")
    study = Study(str(storage), name)
    study.write_spec(spec)
    fingerprint = load_dataset(spec.data).fingerprint  # what `resume` and `confirm` check the data against
    study.write_data_pin(spec.data, fingerprint)
    baselines = {
        "base_rate": {"auc": 0.64, "mastery_corr": 0.22, "mastery_pred_corr": math.nan},
        "running_accuracy": {"auc": 0.68, "mastery_corr": 0.28, "mastery_pred_corr": 1.0},
    }
    study.write_baselines(baselines)
    constraints = [c.resolve(baselines) for c in spec.constraints]
    violations = [violation_column(c) for c in spec.constraints]
    store = Store(study, Schemas(trials=trial_schema(violations, {}, {})))
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    batch: list[tuple[dict, list[dict]]] = []
    for number in range(trials):
        trial_id = f"t{number:05d}"
        status = TrialStatus.ERROR if number == trials - 1 and trials > 2 else TrialStatus.COMPLETED
        rows = []
        free = number % 3 == 0  # every third trial has a free head: faithfulness and residual_share fixed
        for epoch in range(1, epochs + 1):
            auc = 0.6 + 0.15 * rng.random() * epoch / epochs
            mastery = rng.uniform(-0.1, 0.7)
            rows.append(
                {
                    "trial_id": trial_id,
                    "epoch": epoch,
                    "train_loss": 0.6 - 0.02 * epoch,
                    "val_loss": 0.62 - 0.01 * epoch,
                    "auc": auc,
                    "acc": 0.7,
                    "mastery_corr": mastery,
                    "pred_corr": min(mastery + rng.uniform(0.05, 0.3), 1.0),
                    "mastery_corr_student": 0.3,
                    "mastery_pred_corr": rng.uniform(0.2, 0.9),
                    "copy_corr": rng.uniform(0.0, 1.0),
                    "mastery_saturation": rng.uniform(0.0, 0.6),
                    "prospective_corr": rng.uniform(0.0, 0.5),
                    "gain_corr": 0.2,
                    "neg_gain_rate": rng.uniform(0, 0.3),
                    "monotonicity_violation_rate": 0.01,
                    "mastery_recovery": 0.5,
                    "mastery_lift": rng.uniform(-0.1, 0.1),
                    "faithfulness": 0.0 if free else 0.04 + 0.01 * epoch,
                    "residual_share": 1.0 if free else rng.uniform(0.0, 0.4),
                    "seconds": 1.0,
                    "checkpoint": f"{study.tune_path}/{trial_id}/checkpoint_{epoch - 1:06d}",
                    "reported_at": start + pd.Timedelta(seconds=10 * number + epoch),
                }
            )
        best = max(rows, key=lambda r: r["auc"])
        if nan_trial and number == trials - 2 and trials > 2:
            best = {**best, "mastery_corr": float("nan")}
        row = {
            "trial_id": trial_id,
            "study": name,
            "number": number,
            "status": status.value,
            "error": "RuntimeError: loss is nan" if status == TrialStatus.ERROR else None,
            "seed": number,
            "selected_epoch": best["epoch"],
            "epochs": epochs,
            **{m: best[m] for m in schema.METRICS if m in best},
            GUARANTEED: "faithfulness,residual_share" if free else "",
        }
        fixed = fixed_metrics(row[GUARANTEED])
        for constraint in constraints:
            value = float(best[constraint.metric])
            row[violation_column(constraint)] = constraint.violation(value, constraint.metric in fixed)
        row[FEASIBLE] = all(c.met(float(best[c.metric]), c.metric in fixed) for c in constraints)
        for weight in LOSS_NAMES:
            row[param_column(f"weights.{weight}")] = (
                float(10 ** rng.uniform(-3, 0)) if rng.random() < 0.7 else 0.0
            )
        row.update(
            {
                param_column("warmup_epochs"): int(rng.integers(0, 4)),
                param_column("model.gains"): str(rng.choice(["linear", "relu"])),
                "space": spec.space,
                "data": spec.data,
                "data_fingerprint": fingerprint,
                "version": "0.1.0",
                "device": "cpu",
                "checkpoint": best["checkpoint"],
                "trial_dir": f"{study.tune_path}/{trial_id}",
                "started_at": start + pd.Timedelta(seconds=10 * number),
                "ended_at": start + pd.Timedelta(seconds=10 * number + epochs + 1),
                "train_seconds": float(epochs),
            }
        )
        if segments and status.settled:
            batch.append((row, rows))
            if len(batch) == SEGMENT_TRIALS:
                _put_batch(store, batch)
        else:
            store.put_epochs(trial_id, rows)
            store.put_trial(row)
    _put_batch(store, batch)
    return study


def _put_batch(store: Store, batch: list[tuple[dict, list[dict]]]) -> None:
    if batch:
        store.put_settled([row for row, _ in batch], [r for _, rows in batch for r in rows])
        batch.clear()
