"""`make run`: API, worker and scheduler together on SQLite and the filesystem broker (no Redis),
stopped together by Ctrl-C, leaving nothing in /tmp."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import add_user, answers_ok, clean_env, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _started_pids(log: str) -> dict[str, int]:
    """honcho's "api.1 started (pid=123)" lines: each service runs in a session of its own."""
    return {name: int(pid) for name, pid in re.findall(r"(\w+)\.1 started \(pid=(\d+)\)", log)}


@pytest.mark.timeout(180)
def test_make_run_serves_and_flushes_without_redis(tmp_path: Path) -> None:
    port = free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'run.sqlite3'}"
    env = clean_env(
        TODO_DATABASE_URL=database_url,
        TODO_STATE_DIR=str(tmp_path / "state"),
        TODO_FLUSH_INTERVAL=str(INTERVAL),
        TODO_LOG_FORMAT="json",
        BIND=f"127.0.0.1:{port}",
        WORKER_METRICS_PORT=str(free_port()),
        SCHEDULER_METRICS_PORT=str(free_port()),
        TMPDIR=str(temp),  # where anything of make run's would land in "/tmp"
    )
    log_path = tmp_path / "make-run.log"
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def log() -> str:
        return log_path.read_text(errors="replace")

    try:
        assert wait_until(lambda: answers_ok(f"http://127.0.0.1:{port}/readyz"), 90), log()
        serving_since = time.monotonic()
        add_user(database_url, "runner", "pass phrase")
        todos = httpx.get(
            f"http://127.0.0.1:{port}/api/v1.0/todos/", auth=("runner", "pass phrase")
        )
        assert todos.status_code == 200

        # The scheduler's flush reaches the worker through the filesystem broker, within one
        # interval of all three running (plus the worker's start-up, which overlaps the API's).
        assert wait_until(lambda: "nothing to flush" in log(), INTERVAL + 10), log()
        assert time.monotonic() - serving_since < INTERVAL + 10
        assert (tmp_path / "state" / "broker" / "queue").is_dir()
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's group
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    pids = _started_pids(log())
    assert set(pids) == {"api", "worker", "scheduler"}, log()
    for name, pid in pids.items():
        assert wait_until(lambda pid=pid: not _alive(pid), 30), f"{name} still runs:\n{log()}"
    assert "worker: Warm shutdown" in log()
    # Metrics files stayed under the state folder: nothing left behind in /tmp.
    assert {path.name for path in (tmp_path / "state" / "metrics").iterdir()} == set(pids)
    assert not list(temp.glob("todo-*")), list(temp.iterdir())
