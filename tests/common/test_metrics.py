"""The metrics server of the worker and scheduler: exposition, and a liveness that goes stale."""

from __future__ import annotations

import time

import httpx

from tests.support.servers import free_port
from todo_common.metrics import Heartbeat, start_metrics_server


def test_healthz_follows_the_heartbeat() -> None:
    heartbeat = Heartbeat(max_age=0.3)
    port = free_port()
    server = start_metrics_server(port, heartbeat, host="127.0.0.1")
    try:
        fresh = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert fresh.status_code == 200
        assert fresh.json()["status"] == "ok"

        time.sleep(0.5)  # no beat: the loop that should beat is wedged
        stale = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert stale.status_code == 503
        assert stale.json()["status"] == "stale"

        heartbeat.busy_for(30)  # a task runs in this process: waiting, not wedged
        busy = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert (busy.status_code, busy.json()["status"]) == (200, "busy with a task")
        heartbeat.idle()
        heartbeat.excuse = lambda: "broker unreachable"  # a restart would not help
        excused = httpx.get(f"http://127.0.0.1:{port}/healthz")
        assert (excused.status_code, excused.json()["status"]) == (200, "broker unreachable")
        heartbeat.excuse = None
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 503

        heartbeat.beat()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200

        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["Content-Type"].startswith("text/plain")
        assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
    finally:
        server.shutdown()
        server.server_close()
