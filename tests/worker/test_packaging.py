"""The worker and the scheduler each install alone (`uv sync --package X --no-dev`) and run from
that venv: no API code, no other service, no dev tools."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import clean_env, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("package", "other"), [("todo-worker", "todo-scheduler"), ("todo-scheduler", "todo-worker")]
)
def test_service_installs_and_runs_alone(package: str, other: str, tmp_path: Path) -> None:
    venv = tmp_path / "alone"
    subprocess.run(
        ["uv", "sync", "--locked", "--package", package, "--no-dev", "-q"],
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)},
        check=True,
        capture_output=True,
    )
    scripts = {path.name for path in (venv / "bin").iterdir()}
    assert {package, "todoctl"} <= scripts
    assert not {other, "todo-api", "pytest", "honcho"} & scripts
    listed = subprocess.run(
        ["uv", "pip", "list", "--python", str(venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "quart" not in listed and "hypercorn" not in listed and other not in listed

    port = free_port()
    env = clean_env(
        TODO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'alone.sqlite3'}",
        TODO_STATE_DIR=str(tmp_path / "state"),
        TODO_METRICS_PORT=str(port),
    )
    subprocess.run([str(venv / "bin" / "todoctl"), "createdb"], env=env, check=True)
    log = tmp_path / "service.log"
    process = subprocess.Popen(
        [str(venv / "bin" / package)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_until(healthy, 60), log.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(30)
    assert returncode == 0, log.read_text()
