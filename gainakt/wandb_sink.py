"""Optional Weights & Biases logging: imported only when asked for, and never allowed to stop training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

WandbMode = Literal["off", "offline", "online"]
log = logging.getLogger("gainakt.wandb")


class WandbSink:
    """Logs dicts to a wandb run; the first failure is logged once and turns the sink off.

    Constructing one opens the run; `WandbSink()` is an inactive sink that logs nothing."""

    def __init__(
        self,
        mode: WandbMode = "off",
        project: str = "gainakt",
        config: dict[str, Any] | None = None,
        run_dir: str | None = None,
        **init: Any,
    ) -> None:
        self._run = None
        if mode == "off":
            return
        try:
            import wandb

            self._run = wandb.init(
                project=project, mode=mode, config=config, dir=run_dir, reinit="create_new", **init
            )
        except Exception as err:  # wandb must never stop training
            self._fail(err)

    @property
    def active(self) -> bool:
        return self._run is not None

    @property
    def link(self) -> str | None:
        """Where the run is: its URL online, its folder (`.../wandb/offline-run-...`) offline."""
        if self._run is None:
            return None
        try:
            url = getattr(self._run, "url", None)
            return str(url) if url else str(Path(self._run.dir).resolve().parent)
        except Exception as err:
            self._fail(err)
            return None

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        if self._run is None:
            return
        try:
            self._run.log(values, step=step)
        except Exception as err:
            self._fail(err)

    def __call__(self, step: int, values: dict[str, float]) -> None:
        """As a monitor sink."""
        self.log({f"monitor/{k}": v for k, v in values.items()}, step=step)

    def finish(self) -> None:
        """Close the run (once; later calls do nothing)."""
        if self._run is None:
            return
        try:
            self._run.finish()
        except Exception as err:
            self._fail(err)
        self._run = None

    def _fail(self, err: Exception) -> None:
        log.warning("wandb logging is off for this run: %s: %s", type(err).__name__, err)
        self._run = None
