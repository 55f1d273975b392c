"""Each image target holds its own service and not the others: the Dockerfile passes hadolint,
and its build steps, replayed locally, give venvs that run their service alone."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.deploy.dockerfile import DOCKERFILE, parse_stages, replay_build
from tests.support.servers import BIN, answers_ok, clean_env, free_port, wait_until

SCRIPTS = {"api": "todo-api", "worker": "todo-worker", "scheduler": "todo-scheduler"}
PACKAGES = {"api": "todo_api", "worker": "todo_worker", "scheduler": "todo_scheduler"}


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_needs_no_frontend_image() -> None:
    """A `# syntax=` parser directive makes every build pull that frontend image from a
    registry first: an offline build fails before its first step."""
    directives = []
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("#"):
            break  # parser directives come only before the first instruction or blank line
        directives += re.findall(r"^#\s*syntax\s*=\s*(\S+)", line, re.IGNORECASE)
    assert directives == []


def test_every_service_has_a_target_running_as_a_numeric_non_root_user() -> None:
    stages = parse_stages()
    runtime = dict(stages["runtime"].steps)
    user = runtime["USER"]
    assert re.fullmatch(r"\d+:\d+", user) and not user.startswith("0")
    env = dict(re.findall(r"(\w+)=(\S+)", runtime["ENV"]))
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # The folders the services write exist and belong to that user (plain `docker run` works).
    for variable in ("TODO_STATE_DIR", "PROMETHEUS_MULTIPROC_DIR"):
        assert env[variable] in runtime["RUN"], variable
    assert f"chown -R {user}" in runtime["RUN"]
    for service, script in SCRIPTS.items():
        steps = dict(stages[service].steps)
        assert stages[service].base == "runtime"
        assert steps["COPY"].startswith(f"--from=build-{service} ")  # its own venv, no other
        assert steps["CMD"].startswith(f'["{script}"')  # exec form: the service is PID 1


@pytest.mark.timeout(300)
@pytest.mark.parametrize("service", list(SCRIPTS))
def test_image_venv_holds_its_service_alone(service: str, tmp_path: Path) -> None:
    venv = replay_build(f"build-{service}", tmp_path / "build")
    shutil.rmtree(tmp_path / "build" / "src")  # --no-editable: the venv needs no source tree
    python = venv / "bin" / "python"
    scripts = {path.name for path in (venv / "bin").iterdir()}
    assert {SCRIPTS[service], "todoctl"} <= scripts
    assert not ({*SCRIPTS.values()} - {SCRIPTS[service]}) & scripts
    assert not {"pytest", "ruff", "mypy", "honcho", "uv"} & scripts

    others = [package for name, package in PACKAGES.items() if name != service]
    if service != "api":
        others.append("quart")
    for module in [PACKAGES[service], "todo_common", *others]:
        found = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True)
        expected = module in (PACKAGES[service], "todo_common")
        assert (found.returncode == 0) == expected, (module, found.stderr.decode())

    # And the service runs from it (SQLite, the filesystem broker), then stops cleanly.
    port = free_port()
    env = clean_env(
        TODO_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'image.sqlite3'}",
        TODO_STATE_DIR=str(tmp_path / "state"),
        TODO_METRICS_PORT=str(port),
    )
    subprocess.run([str(venv / "bin" / "todoctl"), "createdb"], env=env, check=True)
    command = [str(venv / "bin" / SCRIPTS[service])]
    if service == "api":
        command += ["--bind", f"127.0.0.1:{port}"]
    log = tmp_path / "service.log"
    process = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: answers_ok(f"http://127.0.0.1:{port}/healthz"), 60), (
            log.read_text()
        )
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(30)
    assert returncode == 0, log.read_text()
