"""`make run`: API, worker and scheduler together on SQLite and the filesystem broker (no Redis),
run on a real pseudo-terminal and stopped by Ctrl-C typed into it, as a person does: all three
stop within 2 s, make exits 0, nothing is killed, nothing is left in /tmp."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import termios
import threading
import time
from pathlib import Path

import pytest

from tests.support import local_http
from tests.support.servers import add_user, answers_ok, clean_env, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 2
CTRL_C = b"\x03"
STOP_SECONDS = 2.0
# Each further start and Ctrl-C, after the first run's full check.
MORE_STOPS = 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _started_pids(log: str) -> dict[str, int]:
    """honcho's "api.1 started (pid=123)" lines: each service runs in a session of its own."""
    return {name: int(pid) for name, pid in re.findall(r"(\w+)\.1 started \(pid=(\d+)\)", log)}


class Terminal:
    """`make run` with a pseudo-terminal as its controlling terminal; what it prints is kept."""

    def __init__(self, env: dict[str, str]) -> None:
        master, replica = pty.openpty()

        def own_terminal() -> None:  # a session whose controlling terminal is the replica
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.master = master
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run"],
            cwd=ROOT,
            env=env,
            stdin=replica,
            stdout=replica,
            stderr=replica,
            preexec_fn=own_terminal,
        )
        os.close(replica)
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                if self.process.poll() is not None:
                    return
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the other side is closed: everyone has exited
                return
            if not chunk:
                return
            self.output += chunk

    def text(self) -> str:
        return self.output.decode(errors="replace")

    def ctrl_c(self) -> tuple[int, float]:
        """Type Ctrl-C; make's exit status and how long it took to come."""
        typed = time.monotonic()
        os.write(self.master, CTRL_C)
        try:
            status = self.process.wait(30)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        took = time.monotonic() - typed
        self._reader.join(5)
        os.close(self.master)
        return status, took


def _make_run_env(tmp_path: Path, port: int) -> dict[str, str]:
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    return clean_env(
        TODO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'run.sqlite3'}",
        TODO_STATE_DIR=str(tmp_path / "state"),
        TODO_FLUSH_INTERVAL=str(INTERVAL),
        TODO_LOG_FORMAT="json",
        BIND=f"127.0.0.1:{port}",
        WORKER_METRICS_PORT=str(free_port()),
        SCHEDULER_METRICS_PORT=str(free_port()),
        TMPDIR=str(temp),  # where anything of make run's would land in "/tmp"
    )


def _stopped_cleanly(terminal: Terminal, tmp_path: Path, port: int) -> None:
    # Let the three finish starting before Ctrl-C, as a person reading the banner would.
    assert wait_until(lambda: answers_ok(f"http://127.0.0.1:{port}/readyz"), 60), terminal.text()
    assert wait_until(lambda: "celery@" in terminal.text() and "ready" in terminal.text(), 30), (
        terminal.text()
    )
    status, took = terminal.ctrl_c()
    log = terminal.text()
    pids = _started_pids(log)
    assert set(pids) == {"api", "worker", "scheduler"}, log
    assert status == 0, log
    assert took < STOP_SECONDS, f"stopped in {took:.2f} s:\n{log}"
    for name, pid in pids.items():
        assert not _alive(pid), f"{name} still runs:\n{log}"
    assert "rc=-9" not in log and "SIGKILL" not in log, log
    assert "worker: Warm shutdown" in log
    assert "make: ***" not in log, log
    # Metrics files stayed under the state folder: nothing left behind in /tmp.
    assert {path.name for path in (tmp_path / "state" / "metrics").iterdir()} == set(pids)
    # (uv's own lock file may stay: it is uv's, reused by every uv run.)
    assert not list((tmp_path / "tmp").glob("todo-*")), list((tmp_path / "tmp").iterdir())


@pytest.mark.timeout(240)
def test_make_run_serves_flushes_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = _make_run_env(tmp_path, port)
    terminal = Terminal(env)
    try:
        assert wait_until(lambda: answers_ok(f"http://127.0.0.1:{port}/readyz"), 90), (
            terminal.text()
        )
        serving_since = time.monotonic()
        add_user(env["TODO_DATABASE_URL"], "runner", "pass phrase")
        todos = local_http.get(
            f"http://127.0.0.1:{port}/api/v1.0/todos/", auth=("runner", "pass phrase")
        )
        assert todos.status_code == 200

        # The scheduler's flush reaches the worker through the filesystem broker, within one
        # interval of all three running (plus the worker's start-up, which overlaps the API's).
        assert wait_until(lambda: "nothing to flush" in terminal.text(), INTERVAL + 10), (
            terminal.text()
        )
        assert time.monotonic() - serving_since < INTERVAL + 10
        assert (tmp_path / "state" / "broker" / "queue").is_dir()
    finally:
        _stopped_cleanly(terminal, tmp_path, port)

    for _ in range(MORE_STOPS):  # again and again: no stop may be slow or unclean by luck
        port = free_port()
        _stopped_cleanly(Terminal(_make_run_env(tmp_path, port)), tmp_path, port)
