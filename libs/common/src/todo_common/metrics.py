"""Prometheus metrics that stay correct when a service runs several processes.

Every service runs prometheus-client in multiprocess mode: `prepare_multiprocess_dir()` must run in
the parent before any worker process starts (and before prometheus_client is imported), and it
empties the folder, because files left by dead processes would keep reporting their old values.
The worker and the scheduler serve their metrics, and a liveness `/healthz` driven by a heartbeat,
from a small HTTP server of their own (`start_metrics_server`).
"""

from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # prometheus_client is imported only once the multiprocess folder is set
    from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(service: str) -> Path:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty, writable folder (a fresh temp one if unset,
    removed when this process exits); exit with one line if the configured one is not."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        folder = Path(configured)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for entry in folder.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            # Every metric is a file here: a folder we cannot write fails now, in one line,
            # not at the first request (a container's read-only root, a volume of another UID).
            (folder / f".probe-{os.getpid()}").touch()
            (folder / f".probe-{os.getpid()}").unlink()
        except OSError as error:
            raise SystemExit(
                f"todo-{service}: {MULTIPROC_ENV}={configured} must be a folder this process "
                f"can write ({error.strerror or error}); mount a writable volume there"
            ) from None
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"todo-{service}-metrics-"))
        os.environ[MULTIPROC_ENV] = str(folder)
        atexit.register(_remove_if_mine, folder, os.getpid())
    return folder


def _remove_if_mine(folder: Path, owner: int) -> None:
    # Forked children inherit this handler; only the process that made the folder removes it.
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def render_metrics(collectors: Sequence[Collector] = ()) -> tuple[bytes, str]:
    """The exposition text for this service, summed over all of its processes, followed by what
    `collectors` read at this scrape (such as the queue's depth)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    registry = REGISTRY
    if MULTIPROC_ENV in os.environ:
        registry = CollectorRegistry()
        registry.register(_SizedFilesCollector(os.environ[MULTIPROC_ENV]))
    read_now = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        read_now.register(collector)
    return generate_latest(registry) + generate_latest(read_now), CONTENT_TYPE_LATEST


class _SizedFilesCollector:
    """prometheus_client's multiprocess collector, skipping a process's file while it is empty.

    A process creates its file and only then sizes it; reading it in between raises and fails
    the whole scrape, and a process killed in that window would fail every scrape after
    (prometheus/client_python#1199). An empty file holds no samples, so skipping it loses none.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = [path for path in glob.glob(os.path.join(self.folder, "*.db")) if _sized(path)]
        return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:  # its process ended and the file was removed meanwhile
        return False


class Heartbeat:
    """The time a process's main loop last proved it was turning, for a cheap liveness probe.

    A stale heartbeat is excused (the process is waiting, not wedged, so a restart would not help)
    while the process says it is busy with a task, or while `excuse()` names a reason, such as
    the broker being unreachable.
    """

    def __init__(self, max_age: float, excuse: Callable[[], str | None] | None = None) -> None:
        self.max_age = max_age
        self.excuse = excuse
        self._last = time.monotonic()
        self._busy_until = 0.0

    def beat(self) -> None:
        self._last = time.monotonic()

    def busy_for(self, seconds: float) -> None:
        self._busy_until = time.monotonic() + seconds

    def idle(self) -> None:
        self._busy_until = 0.0

    def age(self) -> float:
        return time.monotonic() - self._last

    def status(self) -> tuple[bool, str]:
        """(alive, why): fresh, or excused, or stale."""
        if self.age() <= self.max_age:
            return True, "ok"
        if time.monotonic() < self._busy_until:
            return True, "busy with a task"
        reason = self.excuse() if self.excuse is not None else None
        if reason:
            return True, reason
        return False, "stale"


def start_metrics_server(
    port: int,
    heartbeat: Heartbeat,
    host: str = "0.0.0.0",  # noqa: S104
    collectors: Sequence[Collector] = (),
) -> Any:
    """Serve `/metrics` and `/healthz` from a daemon thread; returns the server.

    `/healthz` answers 200 while `heartbeat` is fresh (or excused) and 503 once it is stale, so
    Kubernetes can restart a wedged process with an HTTP probe instead of starting Python for
    every check.
    """
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = render_metrics(collectors)
                self._send(200, body, content_type)
            elif path == "/healthz":
                alive, why = heartbeat.status()
                status = {"status": why, "heartbeat_age": round(heartbeat.age(), 1)}
                self._send(200 if alive else 503, json.dumps(status).encode(), "application/json")
            else:
                self._send(404, b'{"status": 404, "error": "not found"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes and scrapes every few seconds would drown the logs

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
