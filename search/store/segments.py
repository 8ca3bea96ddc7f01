"""The study's Parquet store: a trial table and an epoch table, and the confirm table of `confirm`
(one file per confirmation run).

Layout of `store/trials/` and `store/epochs/`:

    TRIAL.parquet                 a live trial's row (running or errored: its row still changes)
    TRIAL.eNNNN.parquet           a live trial's epoch NNNN, one file per epoch (appended, never
                                  rewritten: a trial's epochs cost one small file each)
    segment-L<level>-<digest>.parquet
                                  settled trials (completed, stopped, lost: never written again),
                                  sorted by trial_id (and epoch); <digest> is the first 32 hex
                                  digits of the file's SHA-256 (16 random ones before digests)

Settled trials move from their live files into a segment once 64 of them are waiting (and at the
start and end of every driver, which is how a store written before segments is migrated); when 8
segments share a level they are merged into one of the next level, so a 10,000-trial study holds
about 20 segments and readers open O(segments + live trials) files, whatever its size.

Why plain Parquet segments and not a table format such as Delta Lake (`deltalake`), measured by
`benchmarks/delta_vs_segments.py` (500 trials x 5 epochs, a row per result, compacted every 64
trials, two cores): the promise this store keeps is that `pd.read_parquet(folder)`, polars and
DuckDB's `read_parquet('.../*.parquet')` read it without options. A Delta table's folder read that
way shows every file its log has removed: 11,460 rows of the 2,500 written (segments: 2,500).
And a Delta append per result cost 52 ms on average, 76 ms in the last tenth (segments: 1.4 ms,
flat), because every commit adds a log entry a writer replays. Segments here are removed once
replaced, so a plain reader sees each row once.

On local disk each table folder is a link to a generation of its files, and a compaction swaps
the link (`search/store/generations.py`): plain readers see every row once at every instant, and
a kill at any point leaves the store correct without a repair. In a bucket, which has no links,
a compaction commits like this: the intent (`store/_compaction.json`: the files it adds and
removes) is written first, then the segments (each atomically), then the replaced files are
removed, then the intent. Whoever finds an intent left by a killed driver rolls it forward when
every added file is there (removing the rest of what it replaces) and back otherwise (removing
what it added); the readers here apply a pending intent the same way and drop duplicate keys,
so they never show a row twice or lose one (a plain reader of a bucket may, in the moment of a
compaction). Only the driver that holds the study's lease writes.

Bit rot is named, never read as data: every file is written with Parquet page checksums, which
every read here verifies, and a segment, immutable, is named by its digest, which
`unreadable_files` (`doctor`) checks whole; the live files, rewritten as trials run, rely on their
page checksums. A file written before checksums reads as it is.

Every file of a table has the table's one schema (`search/store/tables.py`). A store written before the
schemas is read as well, and its files are rewritten in the schema by the next driver
(`conform_files`). The columns are documented in the README; the paths in them (`checkpoint`,
`trial_dir`) are relative to the study folder, which the readers here put in front.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from search.schema import ENDED_STATUSES, PATH_COLUMNS, TIME_COLUMNS, TRIAL_KEY, TrialStatus
from search.store import generations, layout
from search.store.study import Study, first_few, first_line
from search.store.tables import conform, epoch_schema, to_table, widen

log = logging.getLogger("search.store.segments")
_warned: set[str] = set()  # unreadable files already named in this process

SEGMENT_TRIALS = 64  # settled trials that wait in live files before they become a segment
FAN_IN = 8  # segments of one level merged into one of the next
SEGMENTED = ("trials", "epochs")  # the tables compaction moves into segments (confirm stays per run)
SEGMENT = re.compile(r"^segment-L(?P<level>\d+)-(?P<id>[0-9a-f]+)\.parquet$")
DIGEST_HEX = 32  # a segment id this long is the start of its file's SHA-256; shorter ones are random
# Every read verifies the page checksums the writer adds (a file written without them reads as is).
VERIFIED = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
)
EPOCH_FILE = re.compile(r"^(?P<trial>.+)\.e(?P<epoch>\d{4,})\.parquet$")
READ_ERRORS = (pa.ArrowException, OSError, ValueError)
RETRIES = 5  # reads that meet a file a concurrent compaction removed list the folder again


@dataclass(frozen=True)
class Unreadable:
    """A store file that cannot be read, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Schemas:
    """The declared schema of each table (`search/store/tables.py`); a writer of the trial or confirm
    table gives its own, which depend on the study's settings and constraints."""

    trials: pa.Schema = field(default_factory=lambda: pa.schema([]))
    epochs: pa.Schema = field(default_factory=epoch_schema)
    confirm: pa.Schema = field(default_factory=lambda: pa.schema([]))


@dataclass(frozen=True)
class Compaction:
    """One commit: the files it adds and the files they replace, as paths under the store folder."""

    add: tuple[str, ...]
    remove: tuple[str, ...]

    def to_json(self) -> bytes:
        return (json.dumps({"add": list(self.add), "remove": list(self.remove)}, indent=1) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Compaction:
        values = json.loads(data)
        return cls(add=tuple(values["add"]), remove=tuple(values["remove"]))


def _read_table(study: Study, path: str, columns: Sequence[str] | None = None) -> pa.Table:
    return pq.read_table(study.fs.open_input_file(path), columns=columns, page_checksum_verification=True)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST_HEX]


def segment_name(level: int, data: bytes) -> str:
    """A segment's file name: its level and the digest of its bytes."""
    return f"segment-L{level}-{_digest(data)}.parquet"


def digest_mismatch(path: str, data: bytes) -> str | None:
    """Why a file's bytes do not match the digest its name carries; None when they do, or when its
    name carries none (a live file, a segment from before digests)."""
    match = SEGMENT.match(_name(path))
    if match is None or len(match["id"]) != DIGEST_HEX:
        return None
    if _digest(data) == match["id"]:
        return None
    return "its bytes do not match the digest in its name (changed on disk after it was written)"


def unreadable_files(study: Study) -> list[Unreadable]:
    """Every Parquet file of the study's store (all three tables) that cannot be read, fails its
    page checksums or, for a segment, its digest."""
    bad = []
    for folder in (study.trials_dir, study.epochs_dir, study.confirm_dir):
        for path in study.list_files(folder, ".parquet"):
            try:
                data = study.read_bytes(path)
                pq.read_table(pa.BufferReader(data), page_checksum_verification=True)
            except READ_ERRORS as err:
                bad.append(Unreadable(path, first_line(err)))
                continue
            if reason := digest_mismatch(path, data):
                bad.append(Unreadable(path, reason))
    return bad


def undigested_segments(study: Study) -> int:
    """How many of the store's segments were written before digests (named by random ids)."""
    return sum(
        1
        for folder in (study.trials_dir, study.epochs_dir)
        for path in study.list_files(folder, ".parquet")
        if (match := SEGMENT.match(_name(path))) and len(match["id"]) != DIGEST_HEX
    )


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _owner(path: str) -> str | None:
    """The trial a live file belongs to; None for a segment."""
    name = _name(path)
    if SEGMENT.match(name):
        return None
    epoch = EPOCH_FILE.match(name)
    return epoch["trial"] if epoch else name.removesuffix(".parquet")


def _level(path: str) -> int:
    match = SEGMENT.match(_name(path))
    return int(match["level"]) if match else -1


def _with_time_types(frame: pd.DataFrame) -> pd.DataFrame:
    """Time columns as UTC timestamps, even where every value is NaT (pyarrow would infer `null`)."""
    for column in TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    return frame


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, write_page_checksum=True)
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


def _sorted(table: pa.Table, name: str) -> pa.Table:
    """A segment's rows in key order, so a reader of a few trials skips most row groups."""
    keys = [TRIAL_KEY, "epoch"] if name == "epochs" else [TRIAL_KEY]
    return table.sort_by([(k, "ascending") for k in keys if k in table.column_names])


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal rows, a missing value (NaN, NaT, None) equal to itself."""

    def missing(value: Any) -> bool:
        return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))

    return a.keys() == b.keys() and all(
        (missing(a[k]) and missing(b[k])) or (not missing(a[k]) and a[k] == b[k]) for k in a
    )


def lacking_epochs(trials: pd.DataFrame, held: Mapping[str, set[int]]) -> list[str]:
    """The completed trials (rows with `status` and `epochs`) that lack one of their epochs in
    `held` (each trial's epochs that have a row): files deleted or lost."""
    if not len(trials) or "epochs" not in trials:
        return []
    completed = trials[(trials["status"] == TrialStatus.COMPLETED) & trials["epochs"].notna()]
    return [
        row[TRIAL_KEY]
        for row in completed.to_dict("records")
        if set(range(1, int(row["epochs"]) + 1)) - held.get(row[TRIAL_KEY], set())
    ]


def held_epochs(epochs: pd.DataFrame) -> dict[str, set[int]]:
    """Each trial's epochs that have a row in `epochs` (`trial_id`, `epoch`)."""
    return {k: set(v) for k, v in epochs.groupby(TRIAL_KEY)["epoch"]} if len(epochs) else {}


class Store:
    """Reads and writes the three tables of one study."""

    def __init__(self, study: Study, schemas: Schemas | None = None) -> None:
        self.study = study
        self.declared = schemas or Schemas()
        self._schemas: dict[str, pa.Schema] = {}  # what each table is written with, once known
        self._epoch_files: dict[str, dict[int, str]] | None = None  # live trial -> epoch -> file
        self._written: dict[str, dict[int, dict[str, Any]]] = {}  # epoch rows this writer wrote
        self._settled_waiting = 0  # settled trials put since the last compaction
        # What this writer wrote into each live file of the trial and epoch tables: a compaction
        # takes rows from here instead of reading back the files it replaces.
        self._live: dict[str, pa.Table] = {}
        # Whether compactions swap generations of the table folders (local disk), not an intent.
        self.swaps = study.local
        self._linked: set[str] = set()  # table folders whose link this writer has made sure of

    @property
    def intent_path(self) -> str:
        return f"{self.study.root}/{layout.COMPACTION_INTENT}"

    # ------------------------------------------------------------------ writing

    def put_trial(self, row: Mapping[str, Any]) -> None:
        """Replace the trial's row; a trial that settles may start a compaction."""
        self._write("trials", f"{row[TRIAL_KEY]}.parquet", [self._relative(row)])
        if TrialStatus(row["status"]).settled:
            self._settled_waiting += 1
            if self._settled_waiting >= SEGMENT_TRIALS:
                self.compact()

    def put_epochs(self, trial_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Make the trial's epoch rows these (one per epoch): each epoch new or changed since this
        writer last wrote it gets a file, an epoch no longer among them loses its file."""
        ordered = sorted(rows, key=lambda r: r["epoch"])
        if len({r["epoch"] for r in ordered}) != len(ordered):
            raise ValueError(f"trial {trial_id}: an epoch appears twice")
        files = self._live_epoch_files().setdefault(trial_id, {})
        written = self._written.setdefault(trial_id, {})
        if -1 in files:  # a trial whose epochs an older version wrote in one file: kept that way
            self._write("epochs", f"{trial_id}.parquet", [self._relative(r) for r in ordered])
            return
        given = {int(r["epoch"]): dict(r) for r in ordered}
        for epoch, row in given.items():
            if epoch in written and _same(written[epoch], row):
                continue
            files[epoch] = self._write("epochs", f"{trial_id}.e{epoch:04d}.parquet", [self._relative(row)])
            written[epoch] = row
        for epoch in [e for e in files if e not in given]:  # a trial resumed from an earlier epoch
            self._delete(files.pop(epoch))
            written.pop(epoch, None)

    def put_confirm(self, row: Mapping[str, Any]) -> None:
        """Replace a confirmation run's row (`search/run/confirm.py`), keyed by its `key`."""
        self._write("confirm", f"{row['key']}.parquet", [row])

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
            except READ_ERRORS:
                continue  # named by the readers; `doctor --repair` quarantines it
            self.study.write_atomic(path, _parquet(conform(found, schema)))
            self._live.pop(path, None)
            rewritten += 1
        return rewritten

    def _write(self, table: str, name: str, rows: list[Mapping[str, Any]]) -> str:
        """Write `rows` as the live file `name` of `table`; its path."""
        path, written = f"{self._folder(table)}/{name}", to_table(rows, self._widened(table, rows))
        self._link(table)
        self.study.write_atomic(path, _parquet(written))
        if table in SEGMENTED:
            self._live[path] = written
        return path

    def _widened(self, table: str, rows: Sequence[Mapping[str, Any]]) -> pa.Schema:
        """The table's schema with any column of `rows` no file has yet (a conditional setting),
        which every file of the table then gets."""
        schema = self.schema(table)
        wider = widen(schema, rows)
        if wider != schema:
            self._schemas[table] = wider
            self.conform_files(table)
        return wider

    def _link(self, table: str) -> None:
        """Make sure a segmented table's folder is a link to a generation (`swaps` only)."""
        if self.swaps and table in SEGMENTED and table not in self._linked:
            generations.current(Path(self._folder(table)))
            self._linked.add(table)

    def _delete(self, path: str) -> None:
        self._live.pop(path, None)
        try:
            self.study.fs.delete_file(path)
        except FileNotFoundError:
            pass

    def _folder(self, table: str) -> str:
        study = self.study
        return {"trials": study.trials_dir, "epochs": study.epochs_dir, "confirm": study.confirm_dir}[table]

    def _file_schemas(self, table: str) -> list[pa.Schema]:
        schemas = []
        for path in self.study.list_files(self._folder(table), ".parquet"):
            try:
                schemas.append(pq.read_schema(self.study.fs.open_input_file(path)))
            except READ_ERRORS:
                continue
        return schemas

    def _live_epoch_files(self) -> dict[str, dict[int, str]]:
        """Each live trial's epoch files, by epoch (-1: one file of every epoch, an older layout),
        from one listing, then kept up to date by this writer."""
        if self._epoch_files is None:
            self._epoch_files = {}
            for path in self.study.list_files(self.study.epochs_dir, ".parquet"):
                owner = _owner(path)
                if owner is not None:
                    match = EPOCH_FILE.match(_name(path))
                    self._epoch_files.setdefault(owner, {})[int(match["epoch"]) if match else -1] = path
        return self._epoch_files

    # ------------------------------------------------------------------ compaction

    def compact(self, min_trials: int | None = None) -> int:
        """Move settled trials out of their live files into a segment, once at least `min_trials`
        (default `SEGMENT_TRIALS`) are waiting, then merge full levels; how many trials moved.
        Finishes first a compaction a killed driver left."""
        self.recover()
        self._settled_waiting = 0
        settled = self._settled_live_trials()
        if not settled or len(settled) < (SEGMENT_TRIALS if min_trials is None else min_trials):
            return 0
        epoch_files = [
            p for p in self.study.list_files(self.study.epochs_dir, ".parquet") if _owner(p) in settled
        ]
        self._combine([f"{self.study.trials_dir}/{t}.parquet" for t in sorted(settled)], epoch_files, level=0)
        for trial in settled:
            self._forget(trial)
        self._merge_levels()
        return len(settled)

    def recover(self) -> str:
        """Finish a compaction a killed driver left: forward if every file it adds is there, back
        otherwise; what was done ('' for nothing to do)."""
        unlinked = 0
        if self.swaps:
            unlinked = sum(generations.discard_unlinked(Path(self._folder(t))) for t in SEGMENTED)
        intent = self.pending()  # in a bucket, or left on local disk by an older version
        if intent is None:
            return "undone" if unlinked else ""
        here = {p for p in intent.add if self._exists(p)}
        forward = here == set(intent.add)
        for path in intent.remove if forward else sorted(here):
            self._delete(self._full(path))
        self._delete(self.intent_path)
        self._epoch_files = None
        return "finished" if forward else "undone"

    def put_settled(self, trials: Sequence[Mapping[str, Any]], epochs: Sequence[Mapping[str, Any]]) -> None:
        """Write settled trials' rows and epoch rows straight into a segment (and merge full
        levels): what compaction would make of them, for tools that write a finished study."""
        if not all(TrialStatus(row["status"]).settled for row in trials):
            raise ValueError("put_settled takes settled trials only (completed, stopped, lost)")
        tables = {}
        for table, rows in (("trials", trials), ("epochs", epochs)):
            relative = [self._relative(r) for r in rows]
            schema = self._widened(table, relative)
            tables[table] = _sorted(to_table(relative, schema), table) if relative else None
        self._commit(tables, [], level=0)
        self._merge_levels()

    def _merge_levels(self) -> None:
        level = 0
        while len(segments := self._segments("trials", level)) >= FAN_IN:
            self._combine(segments, self._segments("epochs", level), level=level + 1)
            level += 1

    def _combine(self, trial_files: Sequence[str], epoch_files: Sequence[str], level: int) -> None:
        """Replace these files by one segment per table at `level`."""
        merged = {
            "trials": self._merged("trials", trial_files),
            "epochs": self._merged("epochs", epoch_files),
        }
        used = [p for _, sources in merged.values() for p in sources]
        self._commit({table: found for table, (found, _) in merged.items()}, used, level)

    def _commit(self, tables: Mapping[str, pa.Table | None], remove: Sequence[str], level: int) -> None:
        """Write `tables` as segments of `level` and remove the files they replace: by a swap of
        generations on local disk, else intent first."""
        segments = {
            table: (segment_name(level, data), data)
            for table, found in tables.items()
            if found is not None
            for data in [_parquet(found)]
        }
        if self.swaps:
            for table in SEGMENTED:
                folder = self._folder(table)
                gone = {_name(p) for p in remove if p.startswith(f"{folder}/")}
                added = dict([segments[table]]) if table in segments else {}
                if gone or added:
                    generations.swap(Path(folder), gone, added)
                    self._linked.add(table)
            for path in remove:
                self._live.pop(path, None)
            return
        adds = {f"{self._folder(table)}/{name}": data for table, (name, data) in segments.items()}
        intent = Compaction(
            add=tuple(self._relative_path(p) for p in adds),
            remove=tuple(self._relative_path(p) for p in remove),
        )
        self.study.write_atomic(self.intent_path, intent.to_json())
        for path, data in adds.items():
            self.study.write_atomic(path, data)
        for path in intent.remove:
            self._delete(self._full(path))
        self._delete(self.intent_path)

    def _merged(self, table: str, sources: Sequence[str]) -> tuple[pa.Table | None, list[str]]:
        """The rows of `sources` as one table in the table's schema, sorted by its keys (None if
        none), and the sources it holds: an unreadable one stays where it is, for the readers to
        name and `doctor --repair` to quarantine."""
        schema = self.schema(table)
        parts, used = [], []
        for path in sources:
            try:
                found = self._live.get(path)
                parts.append(conform(_read_table(self.study, path) if found is None else found, schema))
            except READ_ERRORS:
                continue
            used.append(path)
        if not parts:
            return None, used
        return _sorted(pa.concat_tables(parts), table), used

    def _settled_live_trials(self) -> set[str]:
        settled = set()
        for path in self.study.list_files(self.study.trials_dir, ".parquet"):
            owner = _owner(path)
            if owner is None:
                continue
            try:
                found = self._live.get(path)
                if found is None:
                    found = _read_table(self.study, path, columns=["status"])
                status = found["status"]
            except READ_ERRORS:
                continue
            if len(status) == 1 and TrialStatus(status[0].as_py()).settled:
                settled.add(owner)
        return settled

    def _segments(self, table: str, level: int) -> list[str]:
        return [p for p in self.study.list_files(self._folder(table), ".parquet") if _level(p) == level]

    def _forget(self, trial: str) -> None:
        self._written.pop(trial, None)
        if self._epoch_files is not None:
            self._epoch_files.pop(trial, None)

    def unfinished(self) -> list[str]:
        """What a compaction a killed driver left: its intent (in a bucket) or its unlinked
        generations (on local disk); empty if none."""
        left = [str(p) for t in SEGMENTED if self.swaps for p in generations.unlinked(Path(self._folder(t)))]
        return left + ([self.intent_path] if self.pending() is not None else [])

    def pending(self) -> Compaction | None:
        """The compaction in progress, or left by a killed driver; None if none."""
        try:
            return Compaction.from_json(self.study.read_bytes(self.intent_path))
        except FileNotFoundError:
            return None

    def _exists(self, relative: str) -> bool:
        return self.study.fs.get_file_info(self._full(relative)).type == pafs.FileType.File

    def _full(self, relative: str) -> str:
        return f"{self.study.store_dir}/{relative}"

    def _relative_path(self, path: str) -> str:
        return path.removeprefix(f"{self.study.store_dir}/")

    # ------------------------------------------------------------------ reading

    def confirm(self) -> pd.DataFrame:
        """One row per confirmation run and per (baseline, fold)."""
        frame = self._read("confirm", ["key"])
        return frame.sort_values(["source", "fold", "seed"], ignore_index=True) if len(frame) else frame

    def trials(
        self, columns: Sequence[str] | None = None, trial_ids: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """One row per trial, in order of start; only `columns` (and the key) and only `trial_ids`
        when given, read from the files that hold them."""
        frame = self._read("trials", [TRIAL_KEY], columns, trial_ids, extra=["started_at"])
        order = [c for c in ("started_at", TRIAL_KEY) if c in frame]
        return frame.sort_values(order, ignore_index=True) if len(frame) else frame

    def epochs(
        self, columns: Sequence[str] | None = None, trial_ids: Iterable[str] | None = None
    ) -> pd.DataFrame:
        """One row per trial and epoch; only `columns` (and the keys) and only `trial_ids` when given."""
        frame = self._read("epochs", [TRIAL_KEY, "epoch"], columns, trial_ids)
        return frame.sort_values([TRIAL_KEY, "epoch"], ignore_index=True) if len(frame) else frame

    def ended_trial_ids(self) -> set[str]:
        """Trials that ended for good: completed, failed or stopped (not lost, not running)."""
        trials = self.trials(columns=["status"])
        return set(trials.loc[trials["status"].isin(ENDED_STATUSES), TRIAL_KEY]) if len(trials) else set()

    def trial_rows(self) -> dict[str, dict[str, Any]]:
        return {row[TRIAL_KEY]: row for row in self.trials().to_dict("records")}

    def epoch_rows(self, trial_ids: Iterable[str] | None = None) -> dict[str, dict[int, dict[str, Any]]]:
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for row in self.epochs(trial_ids=trial_ids).to_dict("records"):
            out.setdefault(row[TRIAL_KEY], {})[int(row["epoch"])] = row
        return out

    def warn_lacking_epochs(self, trials: pd.DataFrame, epochs: pd.DataFrame | None = None) -> None:
        """Name, once per process, the completed trials among `trials` that lack epoch rows: all of
        them from `epochs` when given, else, from the folder's listing alone (no epoch file is
        opened), those whose rows are still in live files."""
        if not {"status", "epochs"} <= set(trials.columns):
            trials = self.trials(columns=["status", "epochs"])
        if epochs is not None:
            short = lacking_epochs(trials, held_epochs(epochs))
        else:
            live = {_owner(p) for p in self.study.list_files(self.study.trials_dir, ".parquet")} - {None}
            files = self._live_epoch_files()
            held = {trial: set(found) for trial, found in files.items() if -1 not in found}
            checkable = trials[TRIAL_KEY].isin(live - {t for t, found in files.items() if -1 in found})
            short = lacking_epochs(trials[checkable], held)
        key = f"{self.study.root}: lacking epochs {short}"
        if not short or key in _warned:
            return
        _warned.add(key)
        log.warning(
            f"warning: {len(short)} completed trial(s) lack epoch rows, their files deleted or lost: "
            f"{first_few(short, 5)}; 'gainakt-search doctor {self.study.name}' checks the study"
        )

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

    def _visible(self, table: str, trial_ids: set[str] | None) -> list[str]:
        """The table's files a reader reads: a pending compaction applied (its additions once all
        are written, else what they replace), live files of other trials than asked left out."""
        files = self.study.list_files(self._folder(table), ".parquet")
        intent = self.pending() if table in SEGMENTED else None
        if intent is not None:
            listed = {self._relative_path(p) for p in files}
            complete = all(a in listed or self._exists(a) for a in intent.add)  # as `recover` decides
            hidden = set(intent.remove) if complete else set(intent.add)
            files = [p for p in files if self._relative_path(p) not in hidden]
        if trial_ids is not None:
            files = [p for p in files if _owner(p) is None or _owner(p) in trial_ids]
        return files

    def _read(
        self,
        table: str,
        keys: list[str],
        columns: Sequence[str] | None = None,
        trial_ids: Iterable[str] | None = None,
        extra: Sequence[str] = (),
    ) -> pd.DataFrame:
        wanted = set(trial_ids) if trial_ids is not None else None
        for attempt in range(RETRIES):
            files = self._visible(table, wanted)
            try:
                found = self._scan(files, [*keys, *extra, *columns] if columns else None, wanted)
                break
            except FileNotFoundError:  # a compaction removed a file between listing and reading
                if attempt == RETRIES - 1:
                    raise
        if found is None or not found.num_rows:
            return pd.DataFrame()
        # Live files come after segments in the listing: a row a killed compaction left in both
        # places is the same row, kept once.
        frame = found.to_pandas().drop_duplicates([k for k in keys if k in found.column_names], keep="last")
        # Typed again: stores written before the time columns were typed may hold them naive.
        frame = _with_time_types(frame.reset_index(drop=True))
        for column in PATH_COLUMNS:
            if column in frame:
                frame[column] = frame[column].map(lambda p: self.study.full(p) if isinstance(p, str) else p)
        return frame

    def _scan(
        self, files: list[str], columns: list[str] | None, trial_ids: set[str] | None
    ) -> pa.Table | None:
        """The rows of `files` as one table: one pyarrow dataset scan with the columns and trials
        asked for pushed down; file by file where that fails, so an unreadable file is named and
        left out and stores written before the schemas (a null column beside a typed one) read."""
        ordered = sorted(files, key=lambda p: _owner(p) is not None)  # segments first
        if not ordered:
            return None
        try:
            schemas = [pq.read_schema(self.study.fs.open_input_file(p)) for p in ordered]
            schema = _union(pa.schema([]), schemas)
            dataset = ds.dataset(ordered, schema=schema, format=VERIFIED, filesystem=self.study.fs)
            return dataset.to_table(
                columns=self._present(schema, columns), filter=self._only(schema, trial_ids)
            )
        except FileNotFoundError:
            raise
        except READ_ERRORS:
            pass
        tables = []
        for path in ordered:
            try:
                found = _read_table(self.study, path)
            except FileNotFoundError:
                raise
            except READ_ERRORS as err:
                self._skip(Unreadable(path, first_line(err)))
                continue
            if trial_ids is not None and TRIAL_KEY in found.column_names:
                found = found.filter(pc.is_in(found[TRIAL_KEY], pa.array(sorted(trial_ids), pa.string())))
            tables.append(found.select(self._present(found.schema, columns)))
        tables = [t for t in tables if len(t)]
        if not tables:
            return None
        try:
            return pa.concat_tables(tables, promote_options="permissive")
        except pa.ArrowTypeError:  # files that disagree on a column's type (hand-written): pandas' way
            frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
            return pa.Table.from_pandas(frame, preserve_index=False)

    @staticmethod
    def _present(schema: pa.Schema, columns: Sequence[str] | None) -> list[str]:
        names = schema.names
        return names if columns is None else list(dict.fromkeys(c for c in columns if c in names))

    @staticmethod
    def _only(schema: pa.Schema, trial_ids: set[str] | None) -> ds.Expression | None:
        if trial_ids is None or TRIAL_KEY not in schema.names:
            return None
        return ds.field(TRIAL_KEY).isin(pa.array(sorted(trial_ids), pa.string()))
