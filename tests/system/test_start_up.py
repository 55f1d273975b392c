"""`todo-worker` and `todo-scheduler` start up the same way (`todo_common.service`), run as real
processes: a bad setting (a Redis or broker URL that cannot work too, for `todo-api` as well) or
a taken metrics port ends them with one line and a non-zero exit,
and a SIGTERM before Celery is running is a clean exit.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.servers import BIN, clean_env, free_port, wait_until

SERVICES = ["todo-worker", "todo-scheduler"]


def run(command: str, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        TODO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'todo.sqlite3'}",
        TODO_STATE_DIR=str(tmp_path / "state"),
        **settings,
    )
    return subprocess.run(
        [str(BIN / command)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("command", SERVICES)
def test_a_bad_setting_ends_start_up_with_one_line(command: str, tmp_path: Path) -> None:
    result = run(command, tmp_path, TODO_FLUSH_INTERVAL="soon")
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "TODO_FLUSH_INTERVAL" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["todo-api", *SERVICES])
@pytest.mark.parametrize("variable", ["TODO_REDIS_URL", "TODO_BROKER_URL"])
def test_a_redis_or_broker_url_that_cannot_work_ends_start_up_with_one_line(
    command: str, variable: str, tmp_path: Path
) -> None:
    result = run(command, tmp_path, **{variable: "notaurl"})
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"{variable}: must be a URL" in result.stderr


@pytest.mark.parametrize("command", SERVICES)
def test_a_taken_metrics_port_ends_start_up_with_one_line(command: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # where the metrics server binds: every address
        taken.listen()
        port = taken.getsockname()[1]
        result = run(command, tmp_path, TODO_METRICS_PORT=str(port))
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert lines == [f"{command}: cannot serve metrics on port {port}: Address already in use"]


@pytest.mark.parametrize("command", SERVICES)
def test_sigterm_during_start_up_is_a_clean_exit(command: str, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"  # made by start-up just after the handler is in place
    env = clean_env(
        TODO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'todo.sqlite3'}",
        TODO_STATE_DIR=str(tmp_path / "state"),
        TODO_METRICS_PORT=str(free_port()),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    process = subprocess.Popen(
        [str(BIN / command)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert wait_until(metrics_dir.exists, 30, 0.01)
        process.send_signal(signal.SIGTERM)  # before or while Celery starts: both end cleanly
        output, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, output
