"""One driver per study: `run`, `resume` and `confirm` hold the study's lease while they work.

The lease is `lease.json` in the study folder (host, pid, command, start, heartbeat), rewritten
atomically every `HEARTBEAT_SECONDS` by a background thread and marked released at the end.
A second driver finding a live lease is refused with one line naming the holder; a lease whose
heartbeat is older than `STALE_SECONDS`, or whose pid is dead on this host, was left by a driver
that died, and is taken over (and said).

Guarantee. On a local disk (or any file system with POSIX locks) the driver also holds an
exclusive `flock` on `driver.lock`, which the kernel releases when the process dies, even by
SIGKILL: two drivers can never both hold a study, however close together they start. On object
storage there are no locks; the lease is written, then read back after `SETTLE_SECONDS`, and the
driver whose write did not survive (a later writer overwrote it) gives way. S3 and GCS read their
own writes at once, so two drivers both proceed only where a driver's lease write takes longer
than `SETTLE_SECONDS` to land after it found the study free (tested with two drivers racing,
tests/search_tests/store_tests/test_object_storage.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

import pyarrow.fs as pafs

from gainakt.errors import ConfigError
from search.store import layout
from search.store.study import Study

HEARTBEAT_SECONDS = 5.0
STALE_SECONDS = 30.0  # six missed heartbeats: the holder is gone
SETTLE_SECONDS = 2.0  # object storage: how long a rival's write may take to show


@dataclass(frozen=True)
class LeaseInfo:
    """What `lease.json` holds."""

    token: str
    host: str
    pid: int
    command: str
    started_at: float  # Unix seconds
    heartbeat_at: float
    released_at: float | None = None

    def live(self, now: float | None = None) -> bool:
        """Held by a running driver, as far as this machine can tell."""
        now = time.time() if now is None else now
        if self.released_at is not None or now - self.heartbeat_at > STALE_SECONDS:
            return False
        return self.host != socket.gethostname() or _pid_alive(self.pid)

    @property
    def last_seen(self) -> float:
        return self.released_at if self.released_at is not None else self.heartbeat_at

    def holder(self) -> str:
        started = time.strftime("%H:%M:%S", time.localtime(self.started_at))
        return f"'{self.command}' (pid {self.pid} on {self.host}, since {started})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def lease_path(study: Study) -> str:
    return f"{study.root}/{layout.LEASE}"


def read_lease(study: Study) -> LeaseInfo | None:
    """The study's lease as last written; None where there is none (or it cannot be read)."""
    path = lease_path(study)
    if study.fs.get_file_info(path).type != pafs.FileType.File:
        return None
    try:
        return LeaseInfo(**json.loads(study.read_bytes(path)))
    except (ValueError, TypeError):  # a lease from another version: as good as none
        return None


class DriverLease:
    """Held for the length of a `with` block; see the module's docstring."""

    def __init__(self, study: Study, command: str, echo: Callable[[str], None] = print) -> None:
        self.study = study
        self.echo = echo
        now = time.time()
        self.info = LeaseInfo(uuid.uuid4().hex, socket.gethostname(), os.getpid(), command, now, now)
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> DriverLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        previous = read_lease(self.study)
        if self.study.local:
            self._lock_local(previous)
        # Holding the flock proves a holder on this host dead; one on another host only its heartbeat can.
        if (
            previous is not None
            and previous.live()
            and not (self.study.local and previous.host == self.info.host)
        ):
            self.release()
            raise _refusal(self.study, previous)
        if previous is not None and previous.released_at is None:
            seen = time.strftime("%H:%M:%S", time.localtime(previous.heartbeat_at))
            self.echo(f"taking over the study from {previous.holder()}, gone since {seen}")
        self._write(self.info)
        if not self.study.local:
            time.sleep(SETTLE_SECONDS)
            current = read_lease(self.study)
            if current is not None and current.token != self.info.token:
                raise _refusal(self.study, current)
        self._beat = threading.Thread(target=self._heartbeat, name="study-lease", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
            with contextlib.suppress(OSError):
                self._write(replace(self.info, heartbeat_at=time.time(), released_at=time.time()))
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ inside

    def _lock_local(self, previous: LeaseInfo | None) -> None:
        os.makedirs(self.study.root, exist_ok=True)
        fd = os.open(f"{self.study.root}/{layout.DRIVER_LOCK}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            current = read_lease(self.study) or previous
            raise _refusal(self.study, current) from None
        self._lock_fd = fd

    def _write(self, info: LeaseInfo) -> None:
        self.study.write_atomic(lease_path(self.study), (json.dumps(asdict(info)) + "\n").encode())

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.info = replace(self.info, heartbeat_at=time.time())
            with contextlib.suppress(OSError):  # a missed beat is retried; six in a row release it
                self._write(self.info)


def _refusal(study: Study, holder: LeaseInfo | None) -> ConfigError:
    who = holder.holder() if holder is not None else "another driver (starting up)"
    return ConfigError(
        f"study {study.name!r} is being driven by {who}; wait for it to finish or stop it first"
    )


def refuse_if_held(study: Study) -> None:
    """Refuse now, before Ray starts, when a live driver holds `study`; takes nothing."""
    if not study.exists():
        return
    if study.local and os.path.exists(f"{study.root}/{layout.DRIVER_LOCK}"):
        fd = os.open(f"{study.root}/{layout.DRIVER_LOCK}", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(study, read_lease(study)) from None
        finally:
            os.close(fd)
    current = read_lease(study)
    if current is not None and current.live() and not (study.local and current.host == socket.gethostname()):
        raise _refusal(study, current)


@contextlib.contextmanager
def held(study: Study, command: str, echo: Callable[[str], None] = print) -> Iterator[DriverLease]:
    """`with held(study, "run"):` the study's lease for the block."""
    with DriverLease(study, command, echo) as lease:
        yield lease
