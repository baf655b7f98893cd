"""serve.py running on this machine, as a user starts it: for the load test and the tests.

    with running_server(Path("artifacts/model.keras")) as url:   # http://127.0.0.1:PORT
        urllib.request.urlopen(url + "/healthz")

Starts `python serve.py` on a free port of 127.0.0.1, waits until /healthz answers, and stops it
on leaving. Only ever on the loopback address: nothing here can reach another machine.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import typing
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 60  # loading TensorFlow and the model takes a few seconds on 2 cores


def free_ports(count: int) -> list[int]:
    """Ports on 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@dataclass
class LocalServer:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen  # serve.py itself: with --workers, the parent of the workers
    log: typing.BinaryIO  # what it has written to stderr

    def logged(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@contextlib.contextmanager
def running_server(
    model: Path, *flags: str, workers: int = 1, python: str = sys.executable, project: Path = PROJECT_ROOT
) -> Iterator[str]:
    """serve.py of `project` (this one by default) for `model` (with `flags`, run by `python`) on a
    free local port, once each of its `workers` processes has answered; yields its base URL."""
    with local_server(model, *flags, workers=workers, python=python, project=project) as server:
        yield server.url


@contextlib.contextmanager
def local_server(
    model: Path, *flags: str, workers: int = 1, python: str = sys.executable, project: Path = PROJECT_ROOT
) -> Iterator[LocalServer]:
    """`running_server`, yielding the process and its log beside the URL."""
    port = free_ports(1)[0]
    log = tempfile.TemporaryFile()  # a file, not a pipe: a pipe nobody reads would stall the server
    process = subprocess.Popen(
        [python, "serve.py", "--port", str(port), "--model", str(model), "--workers", str(workers), *flags],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    server = LocalServer(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for_workers(server, workers)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # its workers too would keep the port and the cores
            process.kill()
            process.wait()
        log.close()


def wait_for_workers(server: LocalServer, workers: int) -> None:
    """Return once each of the server's `workers` processes has answered /healthz; RuntimeError,
    with its log, if it exits or they have not within START_SECONDS."""
    deadline = time.monotonic() + START_SECONDS
    answered: set[str] = set()  # the processes that have answered (a new connection each time)
    while len(answered) < workers:
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=1) as response:
                answered.add(json.load(response)["process"])
            time.sleep(0.05)  # the kernel hands the next connection to any process that accepts
        except OSError:
            if server.process.poll() is not None:
                raise RuntimeError(f"serve.py exited at start-up: {server.logged()[-2000:]}") from None
            time.sleep(0.3)
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{workers - len(answered)} of serve.py's {workers} processes did not answer /healthz "
                f"within {START_SECONDS} s: {server.logged()[-2000:]}"
            )


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    """`python -m http.server` serving `folder` on a free port of 127.0.0.1, as any static host
    would, once it answers; yields its base URL and stops it on leaving."""
    port = free_ports(1)[0]
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"python -m http.server did not answer on port {port}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
