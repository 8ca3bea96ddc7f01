"""`gainakt-search doctor NAME`: what state a study folder is in, and with `--repair` the
repairs that are safe to make (unreadable store files to quarantine/, a torn last journal line
dropped, the rows the store lacks rebuilt from the trials' checkpoints), so that `resume` can
finish it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow.fs as pafs

from gainakt.errors import ConfigError, UserError
from search.repair.agreement import disagreements, tell_journal
from search.repair.rebuild import missing, rebuild
from search.run.lease import lease_path, read_lease
from search.schema import CHECKPOINT, TrialStatus
from search.store import layout
from search.store.journal import JournalCheck, check_journal, drop_torn_tail
from search.store.segments import (
    Store,
    Unreadable,
    held_epochs,
    lacking_epochs,
    undigested_segments,
    unreadable_files,
)
from search.store.study import Study, first_few

QUARANTINE = layout.QUARANTINE


@dataclass(frozen=True)
class Finding:
    """One check of a study folder."""

    check: str
    ok: bool
    detail: str
    repairable: bool = False


def examine(study: Study) -> list[Finding]:
    """Every check, in the order a resume depends on them."""
    findings = [_spec(study), _data(study), _lease(study)]
    bad = unreadable_files(study)
    findings.append(_store(study, bad))
    findings.append(_compaction(study))
    journal = _journal(study)
    findings.append(journal)
    if journal.ok and not bad:
        findings.append(_agreement(study))
    findings.append(_tune(study))
    if not bad:
        findings.append(_checkpoints(study))
        findings.append(_epochs(study))
    findings.append(_rows(study))
    return findings


def repair(study: Study, echo: Callable[[str], None] = print) -> int:
    """Make the safe repairs; the number made. Refused while a driver holds the study."""
    lease = read_lease(study)
    if lease is not None and lease.live():
        raise ConfigError(
            f"study {study.name!r} is being driven by {lease.holder()}; repair it once that has ended"
        )
    done = 0
    for bad in unreadable_files(study):
        target = f"{study.root}/{QUARANTINE}/{study.relative(bad.path)}"
        study.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        study.fs.move(bad.path, target)
        echo(f"moved {bad.path} to {target} ({bad.reason})")
        done += 1
    store = Store(study)
    if left := store.unfinished():
        echo(f"{store.recover()} the compaction a killed driver left ({', '.join(left)})")
        done += 1
    journal_readable = True
    if study.local:
        try:
            check = check_journal(study.journal_path, study.optuna_name)
        except UserError:
            check, journal_readable = JournalCheck(0, b""), False  # damaged, not torn: nothing safe to do
        if drop_torn_tail(study.journal_path, check):
            echo(f"dropped the torn last line of {study.journal_path}")
            done += 1
    if _lease_garbled(study):
        study.fs.delete_file(lease_path(study))
        echo(f"removed {lease_path(study)}, which does not parse (no driver holds the study)")
        done += 1
    rebuilt = rebuild(study, journal_readable)
    if rebuilt.trials or rebuilt.epochs:
        echo(
            f"rebuilt from the trials' checkpoints: {len(rebuilt.trials)} trial row(s) and "
            f"{rebuilt.epochs} epoch row(s)"
        )
        done += 1
    if journal_readable:
        told, unsettled = tell_journal(study, echo)
        done += len(told)
        for disagreement in unsettled:
            echo(f"not mended: {disagreement} (neither file says enough to settle it)")
    return done


def _compaction(study: Study) -> Finding:
    store = Store(study)
    left = store.unfinished()
    if not left:
        return Finding("compaction", True, "none pending")
    if store.pending() is None:  # unlinked generations only: no reader sees them
        detail = f"{', '.join(left)}: what a compaction a killed driver left; no reader sees it"
    else:
        detail = (
            f"{', '.join(left)}: a move into segments a killed driver left; until it is finished plain "
            "Parquet readers may see some rows twice"
        )
    return Finding("compaction", False, detail, repairable=True)


def _rows(study: Study) -> Finding:
    lacking = missing(study)
    if not lacking:
        return Finding("rows", True, "every trial with a checkpoint has its rows")
    names = first_few(lacking, 5)
    return Finding(
        "rows",
        False,
        f"{len(lacking)} trial(s) with checkpoints lack rows (unreadable or missing): {names}; their "
        "checkpoints' metrics_epoch.csv hold them",
        repairable=True,
    )


def _spec(study: Study) -> Finding:
    try:
        spec = study.read_spec()
    except UserError as err:
        return Finding("spec", False, str(err))
    return Finding("spec", True, f"{spec.trials} trials of space {spec.space} on {spec.data}")


def _data(study: Study) -> Finding:
    try:
        pin = study.read_data_pin()
    except UserError as err:
        return Finding("data", False, str(err))
    if pin is None:
        return Finding("data", True, "no data.json (a study from before the pin: its rows name the data)")
    return Finding("data", True, f"pinned to {pin.get('source')} (fingerprint {pin.get('fingerprint')})")


def _lease_garbled(study: Study) -> bool:
    """A lease file is there that does not parse as one."""
    return read_lease(study) is None and study.exists_path(lease_path(study))


def _lease(study: Study) -> Finding:
    if _lease_garbled(study):
        return Finding(
            "lease",
            False,
            f"{lease_path(study)} does not parse as a lease; without it no driver can tell whether "
            "another holds the study",
            repairable=True,
        )
    lease = read_lease(study)
    if lease is None:
        return Finding("lease", True, "no driver has held it (or one from before leases)")
    if lease.live():
        return Finding("lease", True, f"driven now by {lease.holder()}")
    if lease.released_at is None:
        return Finding("lease", True, f"its last driver {lease.holder()} died; the next resume takes over")
    return Finding("lease", True, "free")


def _store(study: Study, bad: list[Unreadable]) -> Finding:
    if bad:
        names = first_few([f"{b.path} ({b.reason})" for b in bad], 3, "; ")
        return Finding("store", False, f"{len(bad)} unreadable file(s): {names}", repairable=True)
    counts = {
        name: len(study.list_files(folder, ".parquet"))
        for name, folder in (
            ("trial", study.trials_dir),
            ("epoch", study.epochs_dir),
            ("confirm", study.confirm_dir),
        )
    }
    old = undigested_segments(study)
    before = f"; {old} segment(s) from before digests, checked by their pages only" if old else ""
    files = ", ".join(f"{n} {name} files" for name, n in counts.items())
    return Finding(
        "store", True, f"{files}, all readable, page checksums and segment digests verified{before}"
    )


def _journal(study: Study) -> Finding:
    if not study.local:
        return Finding("journal", True, "remote study: checked when a resume fetches it")
    try:
        check = check_journal(study.journal_path, study.optuna_name)
    except UserError as err:
        return Finding("journal", False, f"{err} (restore it from a copy; it cannot be repaired here)")
    if check.torn_tail:
        return Finding("journal", False, f"{check.lines} entries and a torn last line", repairable=True)
    return Finding("journal", True, f"{check.lines} entries")


def _agreement(study: Study) -> Finding:
    lease = read_lease(study)
    if lease is not None and lease.live():
        return Finding("journal vs store", True, "not compared while a driver writes both")
    found = disagreements(study)
    if not found:
        return Finding("journal vs store", True, "every trial has the same number and ending in both")
    names = first_few([str(d) for d in found], 3, "; ")
    return Finding(
        "journal vs store",
        False,
        f"{len(found)} trial(s) disagree: {names}",
        repairable=any(d.mendable for d in found),
    )


def _epochs(study: Study) -> Finding:
    store = Store(study)
    trials = store.trials(columns=["status", "epochs"])
    short = lacking_epochs(trials, held_epochs(store.epochs(columns=["epoch"])))
    if short:
        return Finding(
            "epochs", False, f"{len(short)} completed trial(s) lack epoch rows: {first_few(short, 5)}", True
        )
    completed = int((trials["status"] == TrialStatus.COMPLETED).sum()) if len(trials) else 0
    return Finding("epochs", True, f"all {completed} completed trials have every epoch's row")


def _tune(study: Study) -> Finding:
    selector = pafs.FileSelector(study.tune_path, allow_not_found=True)
    states = [i for i in study.fs.get_file_info(selector) if i.base_name.startswith("experiment_state")]
    if states:
        return Finding("tune", True, "Tune's saved state is there (a resume restores the Tuner)")
    return Finding(
        "tune", True, "no saved Tune state: a resume starts a new Tuner (finished trials still count)"
    )


def _checkpoints(study: Study) -> Finding:
    trials = Store(study).trials()
    if not len(trials) or CHECKPOINT not in trials:
        return Finding("checkpoints", True, "no trial rows yet")
    completed = trials[(trials["status"] == TrialStatus.COMPLETED) & trials[CHECKPOINT].notna()]
    missing = [
        row.trial_id
        for row in completed.itertuples()
        if study.fs.get_file_info(study.fs_path(row.checkpoint)).type != pafs.FileType.Directory
    ]
    if missing:
        return Finding(
            "checkpoints",
            False,
            f"{len(missing)} completed trial(s) lack their checkpoint: {', '.join(missing[:5])}",
        )
    return Finding(
        "checkpoints", True, f"the selected checkpoint of all {len(completed)} completed trials is there"
    )
