"""A sweep stopped by SIGINT (Ctrl-C) or SIGTERM (a cluster scheduler, `timeout`) stops the same
graceful way: Tune saves its state, the trials' records are kept, the lease is released, and the
study resumes. The command then exits with 128 + the signal's number (130, 143), as shells expect."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Tune stops a run gracefully on SIGUSR1 as on its own Ctrl-C (ray.tune.tune._setup_signal_catching)
TUNE_STOP = getattr(signal, "SIGUSR1", None)
TUNE_SIGINT_OFF = "TUNE_DISABLE_SIGINT_HANDLER"  # leaves SIGINT to the handler installed here


class StoppedAtOnce(KeyboardInterrupt):
    """A stop signal the work could not wait for (a second one, or one before Tune listened)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def graceful_stop() -> Iterator[list[int]]:
    """For the block (a Tune run): the first SIGINT or SIGTERM asks Tune to stop as its Ctrl-C does;
    a second stops at once (`StoppedAtOnce`, a KeyboardInterrupt), as does a first one before Tune
    listens. Yields the list of the signals received. Outside the main thread (which no signal
    reaches) it changes nothing."""
    received: list[int] = []
    if TUNE_STOP is None or threading.current_thread() is not threading.main_thread():
        yield received
        return

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) > 1 or not _tune_listens():
            raise StoppedAtOnce(signum)
        os.kill(os.getpid(), TUNE_STOP)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    tune_setting = os.environ.get(TUNE_SIGINT_OFF)
    os.environ[TUNE_SIGINT_OFF] = "1"
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if tune_setting is None:
            os.environ.pop(TUNE_SIGINT_OFF, None)
        else:
            os.environ[TUNE_SIGINT_OFF] = tune_setting


def ask_tune_to_stop() -> None:
    """Have the Tune run in this process stop gracefully, as on a first stop signal (from the main
    thread, where Tune listens; nothing elsewhere)."""
    if TUNE_STOP is not None and threading.current_thread() is threading.main_thread() and _tune_listens():
        os.kill(os.getpid(), TUNE_STOP)


def _tune_listens() -> bool:
    """Whether a Tune run in this process has its handler for `TUNE_STOP` installed."""
    return TUNE_STOP is not None and signal.getsignal(TUNE_STOP) not in (signal.SIG_DFL, signal.SIG_IGN, None)


def exit_code(signum: int) -> int:
    """What a shell reports for a command ended by `signum`: 128 + its number."""
    return 128 + signum
