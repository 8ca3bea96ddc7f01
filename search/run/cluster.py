"""The Ray a sweep or a confirmation runs on: a local one started here, or a cluster at an address,
checked before anything is asked of it so that a bad address or an impossible request fails in
seconds with one line instead of waiting forever."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping

from gainakt.errors import ConfigError

DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds


def _host_port(address: str) -> tuple[str, int] | None:
    """The TCP endpoint of `host:port` (or `ray://host:port`); None for `auto` and the like."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float) -> None:
    """Ray retries an unreachable address for minutes: try the TCP connection first."""
    endpoint = _host_port(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as err:
        reason = "no answer" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ConfigError(
            f"--address {address}: no Ray cluster reachable within {timeout:g} s ({reason})"
        ) from None


def check_placeable(per_trial: Mapping[str, float]) -> None:
    """A trial whose resources no node of the cluster has would wait forever: refuse it."""
    import ray

    wanted = {name: amount for name, amount in per_trial.items() if amount > 0}
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(all(node.get(name, 0.0) >= amount for name, amount in wanted.items()) for node in nodes):
        return
    largest = {name: max((node.get(name, 0.0) for node in nodes), default=0.0) for name in wanted}
    asked = ", ".join(f"{amount:g} {name}" for name, amount in wanted.items())
    has = ", ".join(f"{amount:g} {name}" for name, amount in largest.items())
    raise ConfigError(
        f"each trial asks for {asked}, but no node of the Ray cluster has that much (the largest has "
        f"{has}); lower --cpus/--gpus or give Ray more (--num-cpus, or a cluster via --address)"
    )


def note_fewer_cpus(num_cpus: int, per_trial: Mapping[str, float]) -> None:
    """A Ray already running is used as it is, whatever --num-cpus asks: say so in one line when it
    has fewer CPUs, with the trials it can really run at once."""
    import ray

    has = ray.cluster_resources().get("CPU", 0.0)
    if has >= num_cpus:
        return
    cpus = per_trial.get("CPU", 0.0)
    at_once = f"at most {int(has // cpus)} trials at once at {cpus:g} CPU each" if cpus > 0 else "fewer CPUs"
    print(
        f"--num-cpus {num_cpus}: this process is already connected to a Ray of {has:g} CPUs, which is "
        f"used as it is: {at_once}",
        file=sys.stderr,
    )


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """TimeoutError in the block after `seconds` (main thread only: where signals are delivered)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """Ray's C++ client repeats a warning on stderr for every failed attempt to reach a cluster:
    keep file descriptor 2 away from it while connecting; the outcome is said in one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _connect(address: str, timeout: float) -> None:
    import ray

    try:
        with _native_stderr_muted(), _deadline(timeout):
            ray.init(
                address=address, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False
            )
    except TimeoutError:
        ray.shutdown()
        raise ConfigError(
            f"--address {address}: no Ray cluster answered within {timeout:g} s (something listens there, "
            "but not a Ray head node; check the address and port, or raise --connect-timeout)"
        ) from None
    except (ConnectionError, ValueError, RuntimeError) as err:
        ray.shutdown()
        raise ConfigError(f"--address {address}: cannot connect to a Ray cluster ({err})") from None


@contextlib.contextmanager
def ray_session(
    address: str | None,
    num_cpus: int | None,
    per_trial: Mapping[str, float] | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
) -> Iterator[None]:
    """Ray for the length of the block: the cluster at `address`, or a local Ray of `num_cpus` CPUs
    (stopped at the end); an already initialised Ray is used as it is and left running. `per_trial`
    ({"CPU": 1, "GPU": 0}) is checked against the cluster's nodes before the block runs."""
    import ray

    if num_cpus is not None and num_cpus < 1:
        raise ConfigError(f"--num-cpus must be at least 1, got {num_cpus}")
    if not connect_timeout > 0:
        raise ConfigError(f"--connect-timeout must be > 0, got {connect_timeout}")
    if ray.is_initialized():
        if num_cpus is not None:
            note_fewer_cpus(num_cpus, per_trial or {})
        if per_trial:
            check_placeable(per_trial)
        yield
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter stays quiet at verbose=0
    if address is not None:
        check_reachable(address, connect_timeout)
        _connect(address, connect_timeout)
    else:
        # "local": a Ray of its own even where another runs on this machine, which ray.init() would
        # otherwise join (and refuse, when num_cpus is given)
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.ERROR,
            log_to_driver=False,
        )
    try:
        if per_trial:
            check_placeable(per_trial)
        yield
    finally:
        ray.shutdown()
