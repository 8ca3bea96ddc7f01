"""Ray Tune's saved state in a study's `tune/` folder, checked before a restore.

Tune writes `experiment_state-SESSION.json` in place, so a full disk (or a kill in mid-write) can
leave it cut short, and Tune then fails to restore the run and starts it afresh with a logged
traceback. A session whose state does not parse is dropped whole (its experiment state and its
searcher's files): Tune restores the session before it, or starts afresh, and either way the
recorder continues each trial Tune does not know from its last checkpoint in the study.
"""

from __future__ import annotations

import json
import re

import pyarrow.fs as pafs

from search.store.study import Study

_STATE = re.compile(r"^experiment_state-(?P<session>.+)\.json$")


def _names(study: Study) -> list[str]:
    found = study.fs.get_file_info(pafs.FileSelector(study.tune_path, allow_not_found=True))
    return sorted(info.base_name for info in found if info.type == pafs.FileType.File)


def has_saved_state(study: Study) -> bool:
    """Whether Tune saved an experiment state to restore (its Tuner alone is not enough: Tune then
    starts the run afresh from the Tuner's first settings)."""
    return any(_STATE.match(name) for name in _names(study))


def drop_torn_sessions(study: Study) -> list[str]:
    """Remove the files of every Tune session whose experiment state does not parse; their names."""
    folder = study.tune_path
    names = _names(study)
    dropped: list[str] = []
    for name in names:
        state = _STATE.match(name)
        if state is None or _parses(study, f"{folder}/{name}"):
            continue
        session = state["session"]
        for other in names:
            if other.rsplit(".", 1)[0].endswith(f"-{session}"):
                study.fs.delete_file(f"{folder}/{other}")
                dropped.append(other)
    return dropped


def _parses(study: Study, path: str) -> bool:
    try:
        json.loads(study.read_bytes(path))
    except ValueError:  # JSON's errors and a torn UTF-8 sequence alike
        return False
    return True
