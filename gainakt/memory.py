"""What this machine can hold: a job whose arrays would not fit is refused with its figure before
anything is allocated, instead of being killed by the kernel half-way."""

from __future__ import annotations

import os

from .errors import DataError


def available_bytes() -> int | None:
    """Memory the kernel can still give this process (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(what: str, needed: float, detail: str) -> None:
    """Refuse `what` (one line, DataError) when its estimated `needed` bytes exceed what is available."""
    available = available_bytes()
    if available is not None and needed > available:
        raise DataError(
            f"{what}: needs about {_size(needed)} ({detail}), more than the {_size(available)} "
            "this machine has available"
        )


def _size(amount: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if amount >= scale:
            return f"{amount / scale:,.1f} {unit}"
    return f"{amount / 1e3:,.0f} kB"
