"""The study's Parquet store: a trial table and an epoch table, one file per trial in each, and the
confirm table of `confirm`, one file per confirmation run.

Every file is rewritten whole and atomically (temporary name, then rename), so a crash
never leaves half a file and each (trial, epoch) is held exactly once. pandas, pyarrow,
polars or DuckDB read the folders directly, e.g.
`pd.read_parquet("runs/quickstart/store/trials")`. The columns are documented in the README;
the paths in them (`checkpoint`, `trial_dir`) are relative to the study folder, which the readers
here put in front.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import ENDED_STATUSES, PATH_COLUMNS, TIME_COLUMNS, TRIAL_KEY
from .study import Study

log = logging.getLogger("search.store")
_warned: set[str] = set()  # unreadable files already named in this process


@dataclass(frozen=True)
class Unreadable:
    """A store file that cannot be read, and why."""

    path: str
    reason: str


def _reason(err: Exception) -> str:
    """The first line of why a file could not be read."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _read_file(study: Study, path: str) -> pd.DataFrame:
    return pq.read_table(study.fs.open_input_file(path)).to_pandas()


def unreadable_files(study: Study) -> list[Unreadable]:
    """Every Parquet file of the study's store that cannot be read (all three tables)."""
    bad = []
    for folder in (study.trials_dir, study.epochs_dir, study.confirm_dir):
        for path in study.list_files(folder, ".parquet"):
            try:
                _read_file(study, path)
            except (pa.ArrowException, OSError, ValueError) as err:
                bad.append(Unreadable(path, _reason(err)))
    return bad


def _file_name(trial_id: str) -> str:
    return f"{trial_id}.parquet"


def _with_time_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Time columns as UTC timestamps, even where every value is NaT (pyarrow would infer `null`)."""
    for column in TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    return frame


def _to_parquet(rows: Iterable[Mapping[str, Any]]) -> bytes:
    table = pa.Table.from_pandas(_with_time_types(pd.DataFrame(list(rows))), preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


class Store:
    """Reads and writes the two tables of one study."""

    def __init__(self, study: Study) -> None:
        self.study = study

    # ------------------------------------------------------------------ writing

    def put_trial(self, row: Mapping[str, Any]) -> None:
        """Replace the trial's row."""
        path = f"{self.study.trials_dir}/{_file_name(row[TRIAL_KEY])}"
        self.study.write_atomic(path, _to_parquet([self._relative(row)]))

    def put_epochs(self, trial_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the trial's epoch rows (one per epoch, in order)."""
        ordered = sorted(rows, key=lambda r: r["epoch"])
        if len({r["epoch"] for r in ordered}) != len(ordered):
            raise ValueError(f"trial {trial_id}: an epoch appears twice")
        path = f"{self.study.epochs_dir}/{_file_name(trial_id)}"
        self.study.write_atomic(path, _to_parquet([self._relative(r) for r in ordered]))

    def put_confirm(self, row: Mapping[str, Any]) -> None:
        """Replace a confirmation run's row (`search/confirm.py`), keyed by its `key`."""
        self.study.write_atomic(f"{self.study.confirm_dir}/{_file_name(row['key'])}", _to_parquet([row]))

    # ------------------------------------------------------------------ reading

    def confirm(self) -> pd.DataFrame:
        """One row per confirmation run and per (baseline, fold)."""
        frame = self._read(self.study.confirm_dir)
        return frame.sort_values(["source", "fold", "seed"], ignore_index=True) if len(frame) else frame

    def trials(self) -> pd.DataFrame:
        """One row per trial, in order of start."""
        frame = self._read(self.study.trials_dir)
        return frame.sort_values(["started_at", TRIAL_KEY], ignore_index=True) if len(frame) else frame

    def epochs(self) -> pd.DataFrame:
        """One row per trial and epoch."""
        frame = self._read(self.study.epochs_dir)
        return frame.sort_values([TRIAL_KEY, "epoch"], ignore_index=True) if len(frame) else frame

    def ended_trial_ids(self) -> set[str]:
        """Trials that ended for good: completed, failed or stopped (not lost, not running)."""
        trials = self.trials()
        return set(trials.loc[trials["status"].isin(ENDED_STATUSES), TRIAL_KEY]) if len(trials) else set()

    def trial_rows(self) -> dict[str, dict[str, Any]]:
        return {row[TRIAL_KEY]: row for row in self.trials().to_dict("records")}

    def epoch_rows(self) -> dict[str, dict[int, dict[str, Any]]]:
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for row in self.epochs().to_dict("records"):
            out.setdefault(row[TRIAL_KEY], {})[int(row["epoch"])] = row
        return out

    def _skip(self, bad: Unreadable) -> None:
        """An unreadable file is left out of every answer and named once, not fatal: one torn file
        must not hide a whole study."""
        if bad.path in _warned:
            return
        _warned.add(bad.path)
        name = bad.path.rsplit("/", 1)[-1].removesuffix(".parquet")
        log.warning(
            f"warning: {bad.path}: cannot be read ({bad.reason}); {name} is left out; "
            f"'gainakt-search doctor {self.study.name} --repair' moves it to quarantine/"
        )

    def _relative(self, row: Mapping[str, Any]) -> dict[str, Any]:
        paths = {c: self.study.relative(row[c]) for c in PATH_COLUMNS if isinstance(row.get(c), str)}
        return {**row, **paths}

    def _read(self, folder: str) -> pd.DataFrame:
        # File by file: trials of one study may differ in columns (a space with conditional settings).
        frames = []
        for path in self.study.list_files(folder, ".parquet"):
            try:
                frames.append(_read_file(self.study, path))
            except (pa.ArrowException, OSError, ValueError) as err:
                self._skip(Unreadable(path, _reason(err)))
        frames = [f for f in frames if len(f)]
        if not frames:
            return pd.DataFrame()
        # Typed again after the concatenation: stores written before the time columns were typed
        # hold a running trial's ended_at as a null column, which would make the whole column object.
        frame = _with_time_types(pd.concat(frames, ignore_index=True))
        for column in PATH_COLUMNS:
            if column in frame:
                frame[column] = frame[column].map(lambda p: self.study.full(p) if isinstance(p, str) else p)
        return frame
