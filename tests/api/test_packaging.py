"""The API installs alone: `uv sync --package todo-api --no-dev` gives a venv that serves it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support import ApiServer, clean_env, free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_api_package_alone_serves_the_api(tmp_path: Path) -> None:
    venv = tmp_path / "api-only"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    subprocess.run(
        ["uv", "sync", "--locked", "--package", "todo-api", "--no-dev", "-q"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    scripts = {path.name for path in (venv / "bin").iterdir()}
    assert {"todo-api", "todoctl"} <= scripts
    assert not {"pytest", "ruff", "mypy"} & scripts
    listed = subprocess.run(
        ["uv", "pip", "list", "--python", str(venv / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "todo-worker" not in listed and "todo-scheduler" not in listed

    url = f"sqlite+aiosqlite:///{tmp_path / 'alone.sqlite3'}"
    subprocess.run(
        [str(venv / "bin" / "todoctl"), "createdb"],
        env=clean_env(TODO_DATABASE_URL=url),
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = tmp_path / "api.log"
    process = subprocess.Popen(
        [str(venv / "bin" / "todo-api"), "--bind", f"127.0.0.1:{port}"],
        env=clean_env(TODO_DATABASE_URL=url),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = ApiServer(process, f"http://127.0.0.1:{port}", {}, log)
    try:
        wait_for_http(server)
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    finally:
        assert server.stop() == 0
