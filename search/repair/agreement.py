"""Whether the Optuna journal and the store say the same of every trial (that it exists, under
which number, and how it ended), and telling the journal what the store knows where a cut journal
left a trial running."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import optuna
import pandas as pd
from optuna.trial import TrialState

from search.run.recorder import journal_study
from search.run.searcher import tell_ending, violations
from search.schema import TRIAL_KEY, TUNE_TRIAL_ATTR, TrialStatus
from search.store.segments import Store
from search.store.study import Study

# The Optuna states that agree with each store status. A trial still running in the store after
# its driver died may already be failed in the journal: the next resume fails it and continues it.
AGREEING: dict[TrialStatus, frozenset[TrialState]] = {
    TrialStatus.COMPLETED: frozenset({TrialState.COMPLETE}),
    TrialStatus.STOPPED: frozenset({TrialState.COMPLETE, TrialState.PRUNED}),
    TrialStatus.ERROR: frozenset({TrialState.FAIL}),
    TrialStatus.RUNNING: frozenset({TrialState.RUNNING, TrialState.FAIL}),
    TrialStatus.LOST: frozenset({TrialState.RUNNING, TrialState.FAIL}),
}
ABSENT = "absent"


@dataclass(frozen=True)
class Disagreement:
    """One trial the journal and the store tell apart."""

    trial_id: str
    number: int | None
    store: str  # the store's status, or ABSENT
    journal: str  # the journal's state, or ABSENT

    @property
    def mendable(self) -> bool:
        """The store knows how the trial ended and the journal still has it running: the journal
        can be told (a journal cut after the store was written)."""
        return self.journal == TrialState.RUNNING.name and self.store in (
            TrialStatus.COMPLETED,
            TrialStatus.STOPPED,
            TrialStatus.ERROR,
        )

    def __str__(self) -> str:
        number = f" (#{self.number})" if self.number is not None else ""
        return f"trial {self.trial_id}{number}: {self.store} in the store, {self.journal} in the journal"


def disagreements(study: Study) -> list[Disagreement]:
    """Every trial whose store row and Optuna trial (the one of the row's number) disagree, and every
    trial the journal completed that the store lacks; empty for a study with no journal yet."""
    journal = journal_study(study)
    return [] if journal is None else _compare(journal[0], Store(study).trials(columns=["number", "status"]))


def _compare(optuna_study: optuna.Study, trials: pd.DataFrame) -> list[Disagreement]:
    if not len(trials):
        return []
    by_number = {t.number: t for t in optuna_study.get_trials(deepcopy=False)}
    found = []
    for row in trials.to_dict("records"):
        number = None if pd.isna(row.get("number")) else int(row["number"])
        told = by_number.get(number) if number is not None else None
        if told is None or told.user_attrs.get(TUNE_TRIAL_ATTR) != row[TRIAL_KEY]:
            found.append(Disagreement(row[TRIAL_KEY], number, row["status"], ABSENT))
        elif told.state not in AGREEING[TrialStatus(row["status"])]:
            found.append(Disagreement(row[TRIAL_KEY], number, row["status"], told.state.name))
    stored = set(trials[TRIAL_KEY])
    for told in by_number.values():
        trial_id = told.user_attrs.get(TUNE_TRIAL_ATTR)
        if told.state == TrialState.COMPLETE and trial_id is not None and trial_id not in stored:
            found.append(Disagreement(str(trial_id), told.number, ABSENT, told.state.name))
    return found


def tell_journal(
    study: Study, echo: Callable[[str], None] = print
) -> tuple[list[Disagreement], list[Disagreement]]:
    """Tell the journal how each mendable trial ended, from its store row (values, constraint
    violations, selected epoch, as the searcher tells them); the disagreements told, and those left."""
    journal = journal_study(study)
    if journal is None:
        return [], []
    optuna_study, storage = journal
    rows = Store(study).trial_rows()
    found = _compare(optuna_study, pd.DataFrame(list(rows.values())))
    mendable = [d for d in found if d.mendable]
    if not mendable:
        return [], found
    study_id = storage.get_study_id_from_name(study.optuna_name)
    spec = study.read_spec().resolved(study.read_baselines())
    for disagreement in mendable:
        row = rows[disagreement.trial_id]
        assert disagreement.number is not None
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, disagreement.number)
        trial = optuna.Trial(optuna_study, trial_id)
        values = [float(row.get(metric, math.nan)) for metric in spec.metric_names]
        status = TrialStatus(row["status"])
        if status != TrialStatus.ERROR and not all(math.isfinite(v) for v in values):
            status = TrialStatus.ERROR  # what the searcher tells of a trial without its objectives
        selected = None if pd.isna(row.get("selected_epoch")) else int(row["selected_epoch"])
        tell_ending(trial, status, values, violations(spec.constraints, row), selected)
        echo(f"told the journal that trial {disagreement.trial_id} (#{disagreement.number}) ended {status}")
    return mendable, [d for d in found if not d.mendable]
