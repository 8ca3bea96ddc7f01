"""The Optuna journal checked before a resume changes anything.

`optuna.journal` is one JSON object per line, appended by Optuna. A crash in the middle of an
append leaves a torn last line (no newline, not JSON): that entry never took effect and is
dropped. Any other line that is not JSON means the file was damaged: the resume stops there,
naming the line, before the store or the journal is touched. A lock left beside it by a
driver killed in mid-append is removed by the next driver that holds the study's lease.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from gainakt.errors import ConfigError


@dataclass(frozen=True)
class JournalCheck:
    lines: int  # entries that parse
    torn_tail: bytes  # the torn last line, b"" when there is none


def check_journal(path: str | Path, study: str) -> JournalCheck:
    """How `path` stands; a damaged line other than the last is a one-line error."""
    path = Path(path)
    if not path.exists():
        return JournalCheck(0, b"")
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" for a whole file
    for number, line in enumerate(lines, start=1):
        try:
            json.loads(line)
        except ValueError as err:
            raise ConfigError(
                f"{path} line {number}: not an Optuna journal entry ({err}); the file is damaged, not "
                f"torn by a crash; see 'gainakt-search doctor {study}'"
            ) from None
    try:
        if tail:
            json.loads(tail)
    except ValueError:
        return JournalCheck(len(lines), tail)
    return JournalCheck(len(lines) + bool(tail), b"")


def drop_torn_tail(path: str | Path, check: JournalCheck) -> bool:
    """Cut a torn last line off the journal (atomically); whether there was one."""
    if not check.torn_tail:
        return False
    path = Path(path)
    data = path.read_bytes()
    if not data.endswith(check.torn_tail):  # changed since the check: leave it to the next one
        return False
    temporary = path.with_name(f".{path.name}.repair")
    temporary.write_bytes(data[: len(data) - len(check.torn_tail)])
    os.replace(temporary, path)
    return True


def drop_stale_lock(path: str | Path) -> bool:
    """Remove the lock Optuna keeps beside the journal while it appends (a symbolic link to the
    journal, or a file), as a driver killed in mid-append leaves it; whether there was one. Only
    for the holder of the study's lease: then nobody else can be appending."""
    lock = Path(f"{path}.lock")
    if not os.path.lexists(lock):
        return False
    lock.unlink()
    return True
