"""The study's Parquet store: a trial table and an epoch table, one file per trial in each, and the
confirm table of `confirm`, one file per confirmation run.

Every file is rewritten whole and atomically (temporary name, then rename), so a crash
never leaves half a file and each (trial, epoch) is held exactly once. Every file of a table has
the table's one schema (`search/tables.py`), so pandas, pyarrow, polars or DuckDB read a folder as
one table without options, e.g. `pd.read_parquet("runs/quickstart/store/trials")`; a store written
before the schemas is read as well, and its files are rewritten in the schema by the next driver
(`conform_files`). The columns are documented in the README;
the paths in them (`checkpoint`, `trial_dir`) are relative to the study folder, which the readers
here put in front.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import ENDED_STATUSES, PATH_COLUMNS, TIME_COLUMNS, TRIAL_KEY
from .study import Study, first_line
from .tables import conform, epoch_schema, to_table, widen

log = logging.getLogger("search.store")
_warned: set[str] = set()  # unreadable files already named in this process


@dataclass(frozen=True)
class Unreadable:
    """A store file that cannot be read, and why."""

    path: str
    reason: str


def _read_table(study: Study, path: str) -> pa.Table:
    return pq.read_table(study.fs.open_input_file(path))


@dataclass(frozen=True)
class Schemas:
    """The declared schema of each table (`search/tables.py`); a writer of the trial or confirm
    table gives its own, which depend on the study's settings and constraints."""

    trials: pa.Schema = field(default_factory=lambda: pa.schema([]))
    epochs: pa.Schema = field(default_factory=epoch_schema)
    confirm: pa.Schema = field(default_factory=lambda: pa.schema([]))


def unreadable_files(study: Study) -> list[Unreadable]:
    """Every Parquet file of the study's store that cannot be read (all three tables)."""
    bad = []
    for folder in (study.trials_dir, study.epochs_dir, study.confirm_dir):
        for path in study.list_files(folder, ".parquet"):
            try:
                _read_table(study, path)
            except (pa.ArrowException, OSError, ValueError) as err:
                bad.append(Unreadable(path, first_line(err)))
    return bad


def _file_name(trial_id: str) -> str:
    return f"{trial_id}.parquet"


def _with_time_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Time columns as UTC timestamps, even where every value is NaT (pyarrow would infer `null`)."""
    for column in TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    return frame


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _union(declared: pa.Schema, found: Iterable[pa.Schema]) -> pa.Schema:
    """The declared fields, then every other column the files hold (typed as a file types it; a
    column only ever null is a string)."""
    fields = {f.name: f.type for f in declared}
    extra: dict[str, pa.DataType] = {}
    for schema in found:
        for f in schema:
            if f.name not in fields and (f.name not in extra or pa.types.is_null(extra[f.name])):
                extra[f.name] = f.type
    typed = {name: (pa.string() if pa.types.is_null(kind) else kind) for name, kind in extra.items()}
    return pa.schema([*declared, *typed.items()])


class Store:
    """Reads and writes the three tables of one study."""

    def __init__(self, study: Study, schemas: Schemas | None = None) -> None:
        self.study = study
        self.declared = schemas or Schemas()
        self._schemas: dict[str, pa.Schema] = {}  # what each table is written with, once known

    # ------------------------------------------------------------------ writing

    def put_trial(self, row: Mapping[str, Any]) -> None:
        """Replace the trial's row."""
        self._write("trials", row[TRIAL_KEY], [self._relative(row)])

    def put_epochs(self, trial_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the trial's epoch rows (one per epoch, in order)."""
        ordered = sorted(rows, key=lambda r: r["epoch"])
        if len({r["epoch"] for r in ordered}) != len(ordered):
            raise ValueError(f"trial {trial_id}: an epoch appears twice")
        self._write("epochs", trial_id, [self._relative(r) for r in ordered])

    def put_confirm(self, row: Mapping[str, Any]) -> None:
        """Replace a confirmation run's row (`search/confirm.py`), keyed by its `key`."""
        self._write("confirm", row["key"], [row])

    def schema(self, table: str) -> pa.Schema:
        """The schema `table` is written with: the declared one, plus any other column its files hold."""
        if table not in self._schemas:
            self._schemas[table] = _union(getattr(self.declared, table), self._file_schemas(table))
        return self._schemas[table]

    def conform_files(self, table: str) -> int:
        """Rewrite the files of `table` that are not in its schema (a store written before the
        schemas, or before a column was added), values unchanged; how many were rewritten."""
        schema, rewritten = self.schema(table), 0
        for path in self.study.list_files(self._folder(table), ".parquet"):
            try:  # the footer says whether a file needs it; only those are read whole
                if pq.read_schema(self.study.fs.open_input_file(path)).equals(schema, check_metadata=False):
                    continue
                found = _read_table(self.study, path)
            except (pa.ArrowException, OSError, ValueError):
                continue  # named by the readers; `doctor --repair` quarantines it
            self.study.write_atomic(path, _parquet(conform(found, schema)))
            rewritten += 1
        return rewritten

    def _write(self, table: str, key: str, rows: list[Mapping[str, Any]]) -> None:
        schema = self.schema(table)
        wider = widen(schema, rows)
        if wider != schema:  # a column no file has yet (a conditional setting): every file gets it
            self._schemas[table] = wider
            self.conform_files(table)
        self.study.write_atomic(f"{self._folder(table)}/{_file_name(key)}", _parquet(to_table(rows, wider)))

    def _folder(self, table: str) -> str:
        study = self.study
        return {"trials": study.trials_dir, "epochs": study.epochs_dir, "confirm": study.confirm_dir}[table]

    def _file_schemas(self, table: str) -> list[pa.Schema]:
        schemas = []
        for path in self.study.list_files(self._folder(table), ".parquet"):
            try:
                schemas.append(pq.read_schema(self.study.fs.open_input_file(path)))
            except (pa.ArrowException, OSError, ValueError):
                continue
        return schemas

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
        # File by file, so that one unreadable file is left out, not fatal; the permissive
        # concatenation reads stores written before the schemas (a null column beside a typed one).
        tables = []
        for path in self.study.list_files(folder, ".parquet"):
            try:
                tables.append(_read_table(self.study, path))
            except (pa.ArrowException, OSError, ValueError) as err:
                self._skip(Unreadable(path, first_line(err)))
        tables = [t for t in tables if len(t)]
        if not tables:
            return pd.DataFrame()
        try:
            frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        except pa.ArrowTypeError:  # files that disagree on a column's type (hand-written): pandas' way
            frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
        # Typed again: stores written before the time columns were typed may hold them naive.
        frame = _with_time_types(frame)
        for column in PATH_COLUMNS:
            if column in frame:
                frame[column] = frame[column].map(lambda p: self.study.full(p) if isinstance(p, str) else p)
        return frame
