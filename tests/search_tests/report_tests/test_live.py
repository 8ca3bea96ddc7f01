"""What a sweep shows while it runs: a live bar on a terminal, a plain line per ended trial elsewhere."""

from __future__ import annotations

import io

from search.analysis.progress import Progress, TimeLeft
from search.report.live import SweepConsole


def progress(ended: int, failed: int = 0, running: int = 2) -> Progress:
    best = "best feasible auc 0.7200 (b)" if ended else None
    return Progress(ended, 4, failed, running, best, TimeLeft(95.0, 4 - ended, 60.0))


def test_without_a_terminal_each_ended_trial_gives_one_plain_line_and_epochs_none():
    out = io.StringIO()
    console = SweepConsole(out)
    assert not console.live  # a StringIO is not a terminal
    for shown in (progress(0), progress(0), progress(1), progress(1), progress(2, failed=1)):
        console.show(shown)
    console.echo("trial b epoch 2: auc 0.7200")
    console.close()
    assert out.getvalue().splitlines() == [
        "progress: 1 of 4 trials ended (0 failed), 2 running; best feasible auc 0.7200 (b); about 1m35s left",
        "progress: 2 of 4 trials ended (1 failed), 2 running; best feasible auc 0.7200 (b); about 1m35s left",
        "trial b epoch 2: auc 0.7200",
    ]


def test_on_a_terminal_one_bar_is_redrawn_below_the_messages(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # the bar is cut to the terminal's width
    out = io.StringIO()
    console = SweepConsole(out, live=True)
    console.show(progress(0))
    console.echo("trial a epoch 1: auc 0.6900")
    console.show(progress(1))
    console.close()
    text = out.getvalue()
    frames = [frame for frame in text.replace("\n", "\r").split("\r") if frame.startswith("progress |")]
    assert any("| 0/4 trials ended, 0 failed, 2 running; about 1m35s left" in f for f in frames), frames
    assert (
        "| 1/4 trials ended, 0 failed, 2 running; about 1m35s left; best feasible auc 0.7200 (b)"
        in frames[-1]
    )
    assert "trial a epoch 1: auc 0.6900\n" in text
    assert text.index("trial a epoch 1") < text.rindex("1/4 trials ended")  # the bar stays below
    assert "progress: " not in text  # no plain lines beside the bar


def test_a_console_pickles_as_tune_pickles_the_sweeps_callbacks():
    import pickle

    console = SweepConsole(io.StringIO(), live=True)
    console.show(progress(1))
    copy = pickle.loads(pickle.dumps(console.show))
    assert copy.__self__.live is False and copy.__self__.out is not None


def test_the_bar_fits_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    out = io.StringIO()
    console = SweepConsole(out, live=True)
    console.show(progress(1))
    console.close()
    frames = [f for f in out.getvalue().replace("\n", "\r").split("\r") if f.startswith("progress |")]
    assert frames and all(len(f) <= 60 for f in frames), frames
