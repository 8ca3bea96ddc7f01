"""Where a study lives: its folder on local disk or behind a URI, and atomic access to the files
in it (their names and what each holds: `search.store.layout`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from gainakt import strict_json
from gainakt.errors import ConfigError, StorageFull, is_no_space
from search.spec import SweepSpec, check_name
from search.store import layout

TUNE_DIR = layout.TUNE
HISTORY = "history"  # spec.json's record of the totals a grown study was asked for


def is_uri(storage: str) -> bool:
    return "://" in storage


def first_line(err: Exception) -> str:
    """Why a storage operation failed, in one line."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def first_few(items: Sequence[str], at_most: int, separator: str = ", ") -> str:
    """`items` joined, the first `at_most` of them and " ..." where there are more."""
    return separator.join(items[:at_most]) + (" ..." if len(items) > at_most else "")


class Study:
    """The folder of one study and atomic file access inside it."""

    def __init__(self, storage: str, name: str) -> None:
        self.name = check_name(name)
        if is_uri(storage):
            try:
                self.fs, base = pafs.FileSystem.from_uri(storage)
            except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
                raise ConfigError(f"storage {storage!r}: pyarrow cannot open it ({err})") from None
            self.storage = storage.rstrip("/")
            parts = urlsplit(storage)  # s3://BUCKET/PREFIX?endpoint_override=...: the query is options
            self._location = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
            self._query = parts.query
        else:
            self.fs, base = pafs.LocalFileSystem(), os.path.abspath(storage)
            self.storage = base
            self._location, self._query = base, ""
            if os.path.exists(base) and not os.path.isdir(base):
                raise ConfigError(f"storage {storage!r}: a file, not a folder")
        self.root = f"{base.rstrip('/')}/{name}"
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self._synced = -1  # the size of a remote study's journal at its last upload (-1: none yet)

    # ------------------------------------------------------------------ paths

    @property
    def location(self) -> str:
        """The study folder as people read it: its path, or its URI without the query's options."""
        return f"{self._location}/{self.name}"

    @property
    def uri(self) -> str:
        """The study folder as pyarrow opens it: the location with the storage's options."""
        return f"{self.location}?{self._query}" if self._query else self.location

    @property
    def ray_storage(self) -> tuple[str, pafs.FileSystem | None]:
        """Ray Tune's `storage_path` and `storage_filesystem` for the study folder: a local path, or
        the path inside the study's own filesystem (so a URI's options, such as an S3 endpoint, hold)."""
        return self.root, None if self.local else self.fs

    @property
    def spec_path(self) -> str:
        return f"{self.root}/{layout.SPEC}"

    @property
    def store_dir(self) -> str:
        return f"{self.root}/{layout.STORE}"

    @property
    def trials_dir(self) -> str:
        return f"{self.root}/{layout.TRIALS}"

    @property
    def epochs_dir(self) -> str:
        return f"{self.root}/{layout.EPOCHS}"

    @property
    def confirm_dir(self) -> str:
        return f"{self.root}/{layout.CONFIRM}"

    @property
    def tune_path(self) -> str:
        return f"{self.root}/{TUNE_DIR}"

    @property
    def journal_path(self) -> str:
        """A local file: Optuna's journal needs one. For a remote study it is a cache, uploaded by
        `sync_journal`."""
        if self.local:
            return f"{self.root}/{layout.JOURNAL}"
        key = hashlib.sha256(self.uri.encode()).hexdigest()[:16]
        return str(Path.home() / ".cache" / "gainakt-search" / key / layout.JOURNAL)

    def display(self) -> str:
        return self.root if self.local else self.location

    def relative(self, path: str) -> str:
        """`path` inside the study folder as the store keeps it (relative); others unchanged."""
        return path.removeprefix(f"{self.root}/")

    def fs_path(self, path: str) -> str:
        """A full path as the store's readers give it (`full`), as the study's filesystem takes it."""
        prefix = f"{self.location}/"
        return f"{self.root}/{path.removeprefix(prefix)}" if path.startswith(prefix) else path

    def exists_path(self, path: str) -> bool:
        """Whether a full path as the store's readers give it (`full`) is there."""
        return self.fs.get_file_info(self.fs_path(path)).type != pafs.FileType.NotFound

    def full(self, path: str) -> str:
        """A stored path where the study is now: relative ones under its folder, others unchanged."""
        if path.startswith("/") or is_uri(path):
            return path
        return f"{self.display()}/{path}"

    # ------------------------------------------------------------------ files

    def exists(self) -> bool:
        """Whether the study is there; storage that cannot be reached is one line, not a traceback."""
        try:
            return self.fs.get_file_info(self.spec_path).type == pafs.FileType.File
        except OSError as err:
            raise ConfigError(f"storage {self._location}: cannot be read ({first_line(err)})") from None

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write under a temporary name, then rename: a crash never leaves a half file at `path`, and
        a failed write leaves no temporary one (a full storage raises `StorageFull`)."""
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        temporary = f"{parent}/.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open_output_stream(temporary) as out:
                out.write(data)
            self.fs.move(temporary, path)
        except BaseException as err:
            with contextlib.suppress(OSError):
                self.fs.delete_file(temporary)
            if is_no_space(err):
                raise StorageFull(path) from err
            raise

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as handle:
            return handle.readall()

    def list_files(self, folder: str, suffix: str) -> list[str]:
        selector = pafs.FileSelector(folder, allow_not_found=True)
        return sorted(
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and info.base_name.endswith(suffix)
            and not info.base_name.startswith(".")
        )

    @property
    def baselines_path(self) -> str:
        return f"{self.root}/{layout.BASELINES}"

    def write_baselines(self, baselines: dict[str, dict[str, float]]) -> None:
        """Each baseline's metrics on the study's validation split (`gainakt.baselines`)."""
        self.write_atomic(self.baselines_path, (strict_json.dumps(baselines, indent=2) + "\n").encode())

    def read_baselines(self) -> dict[str, dict[str, float]]:
        """The baselines the sweep stored; none for a study written before they were."""
        if self.fs.get_file_info(self.baselines_path).type != pafs.FileType.File:
            return {}
        stored = json.loads(self.read_bytes(self.baselines_path))
        return {name: strict_json.nan_for_null(metrics) for name, metrics in stored.items()}

    @property
    def data_path(self) -> str:
        return f"{self.root}/{layout.DATA_PIN}"

    def write_data_pin(self, source: str, fingerprint: str) -> None:
        """The data the study trains on, so that a resume on changed data is refused."""
        pin = {"source": source, "fingerprint": fingerprint}
        self.write_atomic(self.data_path, (json.dumps(pin, indent=2) + "\n").encode())

    def read_data_pin(self) -> dict[str, str] | None:
        """The pinned data; None for a study written before the pin (its trial rows still say)."""
        if self.fs.get_file_info(self.data_path).type != pafs.FileType.File:
            return None
        try:
            return dict(json.loads(self.read_bytes(self.data_path)))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as err:
            raise ConfigError(f"{self.data_path}: not readable ({err})") from None

    def write_spec(self, spec: SweepSpec, history: list[dict[str, Any]] | None = None) -> None:
        """The sweep as started, and, for a study grown since (`resume --trials`), its totals; a
        renamed study keeps the name it was created under (`optuna_name`)."""
        name = self.optuna_name if self.exists() else spec.name
        values = {**spec.to_dict(), "name": name, **({HISTORY: history} if history else {})}
        self.write_atomic(self.spec_path, (json.dumps(values, indent=2) + "\n").encode())

    def read_history(self) -> list[dict[str, Any]]:
        """Each total the study was asked for, with when and by which command; empty if never grown."""
        return list(self._spec_values().get(HISTORY, []))

    def _spec_values(self) -> dict[str, Any]:
        try:
            values: dict[str, Any] = json.loads(self.read_bytes(self.spec_path))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{self.spec_path}: not a readable spec ({err})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{self.spec_path}: not a readable spec (not a JSON object)")
        return values

    @property
    def optuna_name(self) -> str:
        """The name the study was created under, which names its Optuna study in the journal and
        which a renamed folder keeps; commands take and print the folder's name (`name`)."""
        try:
            return str(self._spec_values().get("name", self.name))
        except FileNotFoundError:  # a study being created: it takes its folder's name
            return self.name

    def read_spec(self) -> SweepSpec:
        """The spec as saved, named by the study's folder (a renamed study answers to its new name)
        and stored where the study is now."""
        values = self._spec_values()
        values["name"] = self.name
        values.pop(HISTORY, None)
        values.setdefault("seed_mode", "per-trial")  # a study saved before seed_mode seeded each trial
        values["storage"] = self.storage  # where the study is now: copied or moved, not where it began
        return SweepSpec.from_dict(values, where=self.spec_path)

    def prepare_journal(self) -> str:
        """The local journal path; for a remote study a fresh copy of the bucket's journal (the
        bucket is the truth: a copy left by an earlier driver on this machine may be stale)."""
        path = Path(self.journal_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.local:
            path.unlink(missing_ok=True)
            Path(f"{path}.lock").unlink(missing_ok=True)
            if self.fs.get_file_info(self._remote_journal).type == pafs.FileType.File:
                path.write_bytes(self.read_bytes(self._remote_journal))
            self._synced = path.stat().st_size if path.exists() else 0
        return str(path)

    def sync_journal(self) -> bool:
        """Upload the journal of a remote study next to its results, atomically, if it changed since
        the last upload; whether it did. Local studies write their journal in place."""
        path = Path(self.journal_path)
        if self.local or not path.exists() or path.stat().st_size == self._synced:
            return False
        data = path.read_bytes()  # the journal only grows: its size says whether it changed
        self.write_atomic(self._remote_journal, data)
        self._synced = len(data)
        return True

    def drop_journal_copy(self) -> None:
        """Remove the local copy of a remote study's journal (after its last upload)."""
        if not self.local:
            for leftover in (Path(self.journal_path), Path(f"{self.journal_path}.lock")):
                leftover.unlink(missing_ok=True)

    @property
    def _remote_journal(self) -> str:
        return f"{self.root}/{layout.JOURNAL}"


def open_study(storage: str, name: str) -> Study:
    """An existing study, or a one-line error."""
    study = Study(storage, name)
    if not study.exists():
        raise ConfigError(f"study {name!r} not found in {study.storage} (no {study.spec_path})")
    return study
