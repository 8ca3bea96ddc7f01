"""A local table folder kept as generations, so that a plain reader sees a compaction all at once.

On local disk `store/trials` (and `store/epochs`) is a relative symlink to a hidden folder beside it,
`store/.trials.gNNNNNN/`, that holds the table's files. A compaction builds the next generation
(hard links to the files that stay, the new segment) and then renames a new link over the old one:
a reader that lists the folder, `pandas.read_parquet` or DuckDB's `read_parquet('.../*.parquet')`,
lists one generation or the other, never a mix, so it sees every row once at every instant. The
generation a link stops naming stays until the next compaction, for readers that listed it just
before the swap. A compaction killed before its swap leaves a generation newer than the link's,
which the next writer removes (`discard_unlinked`); killed after it, nothing is left to do.

A study's first write makes the link (an older study's real folder becomes generation 0 with one
rename: the only moment a reader finds no folder there). Object storage has neither links nor
renames, so a study in a bucket compacts with the intent file instead (`search/store/segments.py`).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from gainakt.errors import StorageFull, is_no_space


def _pattern(folder: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(folder.name)}\.g(\d{{6,}})$")


def generations(folder: Path) -> dict[int, Path]:
    """The table's generation folders by number, linked or not."""
    if not folder.parent.is_dir():
        return {}
    pattern = _pattern(folder)
    return {int(m[1]): p for p in folder.parent.iterdir() if (m := pattern.match(p.name)) and p.is_dir()}


def _generation(folder: Path, number: int) -> Path:
    return folder.parent / f".{folder.name}.g{number:06d}"


def _point(folder: Path, target: Path) -> None:
    """Make `folder` a link to `target` with one rename (the commit of a swap)."""
    staged = folder.parent / f".{folder.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(target.name, staged)
    try:
        os.replace(staged, folder)
    except Exception:
        staged.unlink(missing_ok=True)
        raise
    _sync(folder.parent)


def _sync(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def current(folder: Path) -> Path:
    """The generation `folder` names, the layout made first where it is not there yet: a new
    table gets generation 0; a real folder (a study from before generations) becomes it; a link
    lost between those two steps points at the oldest generation again."""
    if folder.is_symlink():
        return folder.resolve()
    found = generations(folder)
    if folder.is_dir():
        first = _generation(folder, max(found, default=-1) + 1)
        folder.rename(first)
    elif found:
        first = found[min(found)]
    else:
        first = _generation(folder, 0)
        first.mkdir(parents=True)
    _point(folder, first)
    return first


def unlinked(folder: Path) -> list[Path]:
    """The generations newer than the one `folder` names: what a compaction killed before its swap
    left, which no reader sees."""
    if not folder.is_symlink():
        return []
    linked = _number(folder.resolve())
    return sorted(path for number, path in generations(folder).items() if number > linked)


def discard_unlinked(folder: Path) -> int:
    """Remove the `unlinked` generations; how many were removed."""
    newer = unlinked(folder)
    for path in newer:
        _remove(path)
    return len(newer)


def swap(folder: Path, remove: set[str], add: Mapping[str, bytes]) -> None:
    """Make the table's files those of now, less `remove`, plus `add` (name -> bytes), in one step
    for its readers; then remove the generations older than the one just replaced."""
    old = current(folder)
    discard_unlinked(folder)
    number = _number(old) + 1
    new = _generation(folder, number)
    new.mkdir()
    try:
        for entry in old.iterdir():
            if entry.name not in remove and not entry.name.startswith(".") and entry.is_file():
                _keep(entry, new / entry.name)
        for name, data in add.items():
            _write(new / name, data)
        _sync(new)
        _point(folder, new)
    except Exception as err:
        if folder.resolve() != new.resolve():  # not swapped: readers still see the old generation
            _remove(new)
        if is_no_space(err):
            raise StorageFull(str(new)) from err
        raise
    for older, path in generations(folder).items():
        if older < number - 1:
            _remove(path)


# The steps of a swap, one file each (tests cut a swap short between any two of them).


def _keep(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a filesystem without hard links
        shutil.copy2(source, target)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _remove(generation: Path) -> None:
    shutil.rmtree(generation, ignore_errors=True)


def _number(generation: Path) -> int:
    return int(generation.name.rsplit(".g", 1)[1])
