"""A server program run for a test on 127.0.0.1 (moto's S3, optuna-dashboard): started in its own
session on a free port, waited for until a URL answers, stopped by its process id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def local_server(
    argv: Callable[[int], list[str]],
    ready_path: str,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
) -> Iterator[int]:
    """Run `argv(port)` (with `env` added to the environment); yield the port once
    `http://127.0.0.1:PORT{ready_path}` answers. Raises TimeoutError when it does not within
    `timeout` seconds, or the program ends first."""
    port = free_port()
    server = subprocess.Popen(
        argv(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2).close()  # noqa: S310
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    what = "ended" if server.poll() is not None else "did not answer"
                    raise TimeoutError(f"{argv(port)[0]} {what} (port {port})") from None
                time.sleep(0.2)
        yield port
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
