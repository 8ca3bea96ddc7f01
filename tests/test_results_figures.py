"""docs/results/figures.py: the numbers and pictures of a results page, from a study's store."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
from study_helpers import fake_study

from search.pareto import load_analysis

FIGURES = Path(__file__).resolve().parents[1] / "docs" / "results" / "figures.py"
spec = importlib.util.spec_from_file_location("results_figures", FIGURES)
figures = importlib.util.module_from_spec(spec)
spec.loader.exec_module(figures)


def test_trade_off_is_the_auc_lost_per_tenth_of_mastery_corr_along_the_two_objective_front():
    trials = pd.DataFrame(
        {
            "trial_id": ["a", "b", "c", "dominated"],
            "auc": [0.730, 0.728, 0.724, 0.720],
            "mastery_corr": [0.10, 0.20, 0.40, 0.15],
        }
    )
    front, cost = figures.trade_off(trials)
    assert list(front["trial_id"]) == ["a", "b", "c"]
    assert cost == pytest.approx(0.002)  # AUC falls 0.02 per unit of mastery_corr on this line
    assert pd.isna(figures.trade_off(trials.iloc[:1])[1])


def test_page_numbers_and_pictures_come_from_the_store(tmp_path, capsys):
    fake_study(tmp_path, "page", trials=10)
    out = tmp_path / "figures"
    out.mkdir()
    assert figures.main([str(tmp_path / "page"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    _, analysis = load_analysis(figures.Study(str(tmp_path), "page"))
    assert f"hypervolume: {analysis.hypervolume:.6g}" in printed
    assert "## Trade-off" in printed and "## Ceiling" in printed and "duplicated (trial, epoch): 0" in printed
    picked = figures.picked_trials(analysis)
    assert list(picked.values())[0]["auc"] == analysis.candidates["auc"].max()
    for name in ("front", "curves", "hypervolume"):
        image = out / f"page_{name}.png"
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and image.stat().st_size > 10_000
