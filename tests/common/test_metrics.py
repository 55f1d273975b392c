"""The metrics server of the worker and scheduler: exposition, and a liveness that goes stale."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import local_http
from tests.support.servers import BIN, clean_env, free_port
from todo_common.metrics import Heartbeat, render_metrics, start_metrics_server


def test_healthz_follows_the_heartbeat() -> None:
    heartbeat = Heartbeat(max_age=0.3)
    port = free_port()
    server = start_metrics_server(port, heartbeat, host="127.0.0.1")
    try:
        fresh = local_http.get(f"http://127.0.0.1:{port}/healthz")
        assert fresh.status_code == 200
        assert fresh.json()["status"] == "ok"

        time.sleep(0.5)  # no beat: the loop that should beat is wedged
        stale = local_http.get(f"http://127.0.0.1:{port}/healthz")
        assert stale.status_code == 503
        assert stale.json()["status"] == "stale"

        heartbeat.busy_for(30)  # a task runs in this process: waiting, not wedged
        busy = local_http.get(f"http://127.0.0.1:{port}/healthz")
        assert (busy.status_code, busy.json()["status"]) == (200, "busy with a task")
        heartbeat.idle()
        heartbeat.excuse = lambda: "broker unreachable"  # a restart would not help
        excused = local_http.get(f"http://127.0.0.1:{port}/healthz")
        assert (excused.status_code, excused.json()["status"]) == (200, "broker unreachable")
        heartbeat.excuse = None
        assert local_http.get(f"http://127.0.0.1:{port}/healthz").status_code == 503

        heartbeat.beat()
        assert local_http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200

        metrics = local_http.get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["Content-Type"].startswith("text/plain")
        assert local_http.get(f"http://127.0.0.1:{port}/other").status_code == 404
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("service", ["todo-api", "todo-worker", "todo-scheduler"])
def test_a_metrics_folder_it_cannot_write_stops_the_service_with_one_line(
    service: str, tmp_path: Path
) -> None:
    """As in a container whose read-only root has no writable volume at the metrics folder:
    the service runs as a user (here nobody) that cannot write the folder."""
    if os.getuid() != 0:
        pytest.skip("running the service as another user needs root")
    folder = tmp_path / "metrics"
    folder.mkdir()
    tmp_path.chmod(0o755)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(BIN / service)],
        env=clean_env(
            PROMETHEUS_MULTIPROC_DIR=str(folder),
            TODO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.sqlite3'}",
            TODO_STATE_DIR=str(tmp_path / "state"),
            PYTHONDONTWRITEBYTECODE="1",
        ),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"PROMETHEUS_MULTIPROC_DIR={folder}" in lines[0]
    assert "Permission denied" in lines[0]


def test_a_process_file_not_yet_sized_does_not_fail_the_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prometheus_client creates a process's file, then sizes it; a scrape in between used to
    fail whole (and for good, had that process died there: prometheus/client_python#1199)."""
    counting = (
        "from prometheus_client import Counter\nCounter('todo_demo_events', 'Demo.').inc(3)\n"
    )
    env = {**clean_env(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([str(BIN / "python"), "-c", counting], env=env, check=True)
    (tmp_path / "counter_999999.db").touch()  # a process between creating and sizing its file
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    body, _ = render_metrics()

    assert b"todo_demo_events_total 3.0" in body
