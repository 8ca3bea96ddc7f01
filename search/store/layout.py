"""The study folder, STORAGE/NAME/: every file and folder in it, named once.

The code builds its paths from these names, and docs/study-folder.md shows `layout_markdown()`
(a test keeps the two the same): `python -m search.store.layout` prints it.
"""

from __future__ import annotations

from typing import NamedTuple

SPEC = "spec.json"
DATA_PIN = "data.json"
BASELINES = "baselines.json"
JOURNAL = "optuna.journal"
STORE = "store"
TRIALS = f"{STORE}/trials"
EPOCHS = f"{STORE}/epochs"
CONFIRM = f"{STORE}/confirm"
COMPACTION_INTENT = f"{STORE}/_compaction.json"
TUNE = "tune"
LEASE = "lease.json"
DRIVER_LOCK = "driver.lock"
QUARANTINE = "quarantine"
WANDB = "wandb"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"


class Entry(NamedTuple):
    path: str
    what: str


LAYOUT: tuple[Entry, ...] = (
    Entry(SPEC, "the sweep as it was started, and the totals a grown study asked for (a resume reads it)"),
    Entry(DATA_PIN, "the data's source and fingerprint (a resume on other data is refused)"),
    Entry(BASELINES, "the lookups' figures on the validation fold, fitted once for every trial"),
    Entry(JOURNAL, "the Optuna study (optuna-dashboard opens it)"),
    Entry(
        f"{TRIALS}/*.parquet",
        "a row per trial: `TRIAL.parquet` while it runs or errored, then in a `segment-L*-*.parquet`",
    ),
    Entry(
        f"{EPOCHS}/*.parquet",
        "a row per trial and epoch: `TRIAL.eNNNN.parquet` while it runs, then in a segment",
    ),
    Entry(f"{CONFIRM}/*.parquet", "a row per confirmation run (`confirm`)"),
    Entry(
        f"{STORE}/.trials.gNNNNNN/, .epochs.gNNNNNN/",
        "on local disk, the generations of files `trials/` and `epochs/` link to: a compaction "
        "makes the next and swaps the link, so a reader sees it all at once",
    ),
    Entry(COMPACTION_INTENT, "in a bucket, only while a compaction runs: the files it writes and removes"),
    Entry(
        f"{TUNE}/TRIAL/checkpoint_NNNNNN/",
        "Ray Tune's checkpoint of each epoch: the trial's run folder (best.pt, last.pt, metrics_epoch.csv)",
    ),
    Entry(LEASE, "the driver at work on the study: host, pid, command, heartbeat"),
    Entry(DRIVER_LOCK, "held by a local driver while it runs; the kernel frees it when the driver dies"),
    Entry(f"{QUARANTINE}/", "store files `doctor --repair` found unreadable, moved aside"),
    Entry(f"{WANDB}/", "the trials' wandb runs, with `--wandb offline` or `online`"),
    Entry(REPORT_HTML, "the report (`report`, and the end of `run`): figures and tables, opens offline"),
    Entry(REPORT_MD, "the same report's text as Markdown"),
)


def layout_markdown() -> str:
    """The layout as the Markdown table docs/study-folder.md shows."""
    rows = [f"| `{entry.path}` | {entry.what} |" for entry in LAYOUT]
    return "\n".join(["| path in STORAGE/NAME/ | what it holds |", "| --- | --- |", *rows]) + "\n"


if __name__ == "__main__":
    print(layout_markdown(), end="")
