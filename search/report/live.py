"""What a sweep shows while it runs: its messages, and its progress as one live bar at the bottom of
a terminal (tqdm), or, when the output is not a terminal (a pipe, a log file), as a plain line each
time a trial ends."""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

from tqdm import tqdm

from search.analysis.progress import Progress
from search.report.terminal import terminal_width

BAR_FORMAT = "{desc} |{bar:20}| {n}/{total} trials ended{postfix}"  # tqdm puts ", " before a postfix


class SweepConsole:
    """`echo` for the sweep's messages and `show` for its progress; `close` ends the bar."""

    def __init__(self, out: TextIO | None = None, live: bool | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.live = self.out.isatty() if live is None else live
        self._bar: tqdm | None = None
        self._shown = (0, 0)  # (ended, failed) of the last plain line

    def echo(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.out)  # above the bar, which is drawn again below it
        else:
            print(text, file=self.out, flush=True)

    def show(self, progress: Progress) -> None:
        if not self.live:
            if (progress.ended, progress.failed) != self._shown:
                self._shown = (progress.ended, progress.failed)
                self.echo(progress.line())
            return
        # The time left before the best trial, which a narrow terminal cuts first.
        details = "; ".join(
            [f"{progress.failed} failed, {progress.running} running", *progress.details[::-1]]
        )
        if self._bar is None:
            self._bar = tqdm(
                total=progress.asked,
                file=self.out,
                desc="progress",
                bar_format=BAR_FORMAT,
                leave=True,
                # tqdm draws nothing on a terminal that reports no size (a pty nobody sized):
                # the width falls back on $COLUMNS, then 100, and the one bar needs one row
                ncols=terminal_width(),
                nrows=max(shutil.get_terminal_size().lines, 2),
            )
        self._bar.n = progress.ended
        self._bar.set_postfix_str(details, refresh=False)
        self._bar.refresh()

    # Tune pickles the sweep's callbacks, and with them this console's methods: a copy writes plain
    # lines to standard output (a stream and a bar do not pickle).
    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(live=False)  # type: ignore[misc]

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
