"""docs/results/confirmation.py: a results page's confirmation tables, from a real confirm table."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from conftest import REPO
from study_helpers import fake_study

from search.store.segments import Store

SCRIPT = REPO / "docs" / "results" / "confirmation.py"


@pytest.fixture(scope="module")
def confirmation():
    pytest.importorskip("matplotlib", reason="the results scripts need the [docs] extra")
    loader = importlib.util.spec_from_file_location("results_confirmation", SCRIPT)
    module = importlib.util.module_from_spec(loader)
    sys.modules["results_confirmation"] = module
    loader.loader.exec_module(module)
    return module


def test_the_page_tables_pair_each_trial_with_the_reference_on_the_same_seeds(confirmation, tmp_path, capsys):
    study = fake_study(tmp_path, "page", 4)
    store = Store(study)
    rng = np.random.default_rng(0)
    shared = rng.normal(0, 0.01, size=5)  # what a seed does to every model alike
    for source, level in (("dkt", 0.72), ("t1", 0.73)):
        for k in range(5):
            metrics = {f"valid.{m}": level + shared[k] for m in confirmation.METRICS}
            metrics.update({"valid.auc.student_low": level - 0.01, "valid.auc.student_high": level + 0.01})
            store.put_confirm(
                {
                    "key": f"{source}-{k}",
                    "source": source,
                    "seed": 1000 + k,
                    "fold": 1,
                    "status": "COMPLETED",
                    **metrics,
                }
            )
    store.put_confirm(
        {
            "key": "baseline:pfa-fold1",
            "source": "baseline:pfa",
            "seed": -1,
            "fold": 1,
            "status": "COMPLETED",
            **{f"valid.{m}": 0.7 for m in confirmation.METRICS},
        }
    )
    assert confirmation.main([str(tmp_path / "page"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # The shared seed noise cancels in the pair: t1 - dkt is 0.01 exactly, with no spread, on each
    # of the study's objectives the runs hold (auc, mastery_corr), which Holm corrects together.
    assert "Holm-corrected across all 2" in out
    assert "| t1 - dkt | auc | 0.0100 [0.0100, 0.0100] | [+0.0100, +0.0100] | < 0.0001 |" in out
    # The student-level interval, beside the one over seeds.
    assert "| t1 | [0.7200, 0.7400] |" in out and "| dkt | [0.7100, 0.7300] |" in out
    assert "## Confirmed on valid (folds 1)" in out and "| baseline:pfa | 1 | 0.7000 |" in out
    assert (tmp_path / "page_confirmed.png").stat().st_size > 0
