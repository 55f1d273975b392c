"""`todo-api`'s processes, as real processes: one worker serves in the `todo-api` process itself;
with `--workers N` a worker whose supervisor dies (even by SIGKILL) drains what it accepted and
exits, and a worker that dies unasked takes the supervisor and the other workers down (exit 1).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.databases import DatabaseFactory
from tests.support.servers import ApiServer, connection_refused, start_api, wait_until

GRACEFUL_TIMEOUT = 6.0


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid` and that run a spawned todo-api worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and not gone(int(entry.name)):
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid and b"spawn_main" in command:
                found.append(int(entry.name))
    return found


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def gone(pid: int) -> bool:
    """The process has exited (an orphan's parent, the container's init, may never reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def begin_slow_post(api: ApiServer) -> tuple[socket.socket, bytes]:
    """A POST whose head and first body bytes have reached the server; returns the socket and
    the rest of the body, still to send."""
    auth = httpx.BasicAuth(*api.add_user())._auth_header
    body = b'{"name": "slow", "task": "sent across the stop"}'
    head = (
        "POST /api/v1.0/todos/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    address = httpx.URL(api.url)
    sock = socket.create_connection((address.host, address.port), timeout=GRACEFUL_TIMEOUT + 10)
    sock.sendall(head.encode() + body[:5])
    time.sleep(0.3)  # the server has read the head: the request is accepted
    return sock, body[5:]


def finish(sock: socket.socket, rest: bytes) -> bytes:
    """Send the rest of the body and read the whole response, until the server closes."""
    sock.sendall(rest)
    response = b""
    while chunk := sock.recv(65536):
        response += chunk
    sock.close()
    return response


@pytest.fixture
def settings(databases: DatabaseFactory) -> dict[str, str]:
    return {
        "TODO_DATABASE_URL": databases.create("sqlite"),
        "TODO_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT),
    }


@pytest.fixture
def supervised(settings: dict[str, str], tmp_path: Path) -> Iterator[tuple[ApiServer, list[int]]]:
    api = start_api(settings, tmp_path, workers=2)
    assert wait_until(lambda: len(children(api.process.pid)) == 2, 10), api.log()
    workers = children(api.process.pid)
    yield api, workers
    api.stop(signal.SIGKILL)
    for pid in workers:
        kill(pid)


def test_one_worker_serves_in_the_todo_api_process(
    settings: dict[str, str], tmp_path: Path
) -> None:
    """The cluster case: no supervisor and no child process; SIGTERM drains and exits 0."""
    api = start_api(settings, tmp_path, workers=1)
    try:
        assert children(api.process.pid) == []
        sock, rest = begin_slow_post(api)
        api.process.send_signal(signal.SIGTERM)
        assert wait_until(lambda: connection_refused(api.url), 2, 0.01)
        response = finish(sock, rest)
        assert api.process.wait(GRACEFUL_TIMEOUT + 5) == 0, api.log()
    finally:
        api.stop(signal.SIGKILL)
    assert response.startswith(b"HTTP/1.1 201"), response
    assert b"\r\nconnection: close\r\n" in response.lower()


@pytest.mark.timeout(60)
def test_workers_drain_and_exit_when_the_supervisor_is_killed(
    supervised: tuple[ApiServer, list[int]],
) -> None:
    api, workers = supervised
    sock, rest = begin_slow_post(api)
    api.process.send_signal(signal.SIGKILL)  # no chance to pass anything on to the workers
    api.process.wait(5)
    # Each worker notices at once and stops listening, while the accepted request drains.
    assert wait_until(lambda: connection_refused(api.url), 2, 0.01), api.log()
    assert not all(gone(pid) for pid in workers), "the workers quit instead of draining"
    response = finish(sock, rest)
    assert response.startswith(b"HTTP/1.1 201"), response
    assert b"\r\nconnection: close\r\n" in response.lower()
    assert wait_until(lambda: all(gone(pid) for pid in workers), GRACEFUL_TIMEOUT), api.log()


@pytest.mark.timeout(60)
def test_a_worker_that_dies_stops_the_supervisor_with_exit_1(
    supervised: tuple[ApiServer, list[int]],
) -> None:
    api, workers = supervised
    kill(workers[0])
    assert api.process.wait(GRACEFUL_TIMEOUT + 5) == 1, api.log()
    assert wait_until(lambda: gone(workers[1]), 5)
    assert connection_refused(api.url)
