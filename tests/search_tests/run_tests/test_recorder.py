"""The recorder's part in a retry: a trial whose worker died starts again from the study's latest
checkpoint of it, whatever checkpoint Tune kept."""

from __future__ import annotations

from sweep_helpers import tune_trial

from search.run.recorder import StoreRecorder
from search.run.trainable import RESUME_FROM, latest_checkpoint
from search.spec import SweepSpec
from search.store.segments import Store
from search.store.study import Study


def test_a_retried_trial_is_told_the_studys_latest_checkpoint_which_wins_over_an_older_one_of_tunes(
    tmp_path, shared_ray
):  # Ray: where a trial's error is read
    study = Study(str(tmp_path), "retried")
    spec = SweepSpec(name="retried", storage=str(tmp_path), trials=1)
    said: list[str] = []
    recorder = StoreRecorder(spec, Store(study), {"fixed.epochs": 3}, study.journal_path, echo=said.append)
    trial = tune_trial(tmp_path, "t1", 0)
    recorder.on_trial_start(0, [trial], trial)
    folder = tmp_path / "retried" / "tune" / "t1"
    for epoch in (1, 2):
        (folder / f"checkpoint_{epoch - 1:06d}").mkdir(parents=True)
        recorder.epochs.setdefault("t1", {})[epoch] = {
            "trial_id": "t1",
            "epoch": epoch,
            "checkpoint": str(folder / f"checkpoint_{epoch - 1:06d}"),
        }
    # The worker died while Tune saved epoch 2's checkpoint: Tune holds epoch 1's only.
    recorder.on_trial_recover(0, [trial], trial)
    told = trial.config[RESUME_FROM]
    assert told == str(folder / "checkpoint_000001")
    assert said[-1].endswith("it continues from its epoch 2 checkpoint"), said
    # What `run_trial` then starts from: the later of the two.
    assert latest_checkpoint(str(folder / "checkpoint_000000"), told) == told
