"""The chart's own commands and environment, run as local processes against the local PostgreSQL
and Redis: the migrations job, then api, worker and scheduler. The api becomes ready, a todo's
views get flushed by worker and scheduler, and SIGTERM ends each one cleanly within its grace.
Without hooks, the pods' wait-for-migrations init containers wait for the migrations job."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.chart import (
    Manifest,
    component,
    container_env,
    main_container,
    pod_spec,
    render,
)
from tests.support import local_http
from tests.support.databases import DatabaseFactory
from tests.support.servers import BIN, add_user, clean_env, free_port, wait_until
from todo_common.migrate import head_revision


class LocalPod:
    """One of the chart's containers as a local process: hosts, ports and folders rewritten."""

    def __init__(
        self,
        manifests: list[Manifest],
        workload: Manifest,
        folder: Path,
        container: dict[str, Any] | None = None,
    ) -> None:
        self.container = container or main_container(workload)
        self.name = self.container["name"]
        self.grace = int(pod_spec(workload).get("terminationGracePeriodSeconds", 30))
        self.env = container_env(manifests, self.container)
        self.folder = folder / workload["metadata"]["name"] / self.name
        self.folder.mkdir(parents=True)
        self.argv = [str(BIN / self.container["command"][0]), *self.container["command"][1:]]
        self.ports: dict[int, int] = {}  # the chart's port -> the local one
        self.process: subprocess.Popen[bytes] | None = None

    def localize(self, database_url: str, redis_url: str, prefix: str) -> None:
        self.env.update(
            TODO_DATABASE_URL=database_url, TODO_REDIS_URL=redis_url, TODO_REDIS_KEY_PREFIX=prefix
        )
        for variable in ("TODO_STATE_DIR", "PROMETHEUS_MULTIPROC_DIR"):
            if variable in self.env:
                self.env[variable] = str(self.folder / variable.lower())
        if "TODO_METRICS_PORT" in self.env:
            local = free_port()
            self.ports[int(self.env["TODO_METRICS_PORT"])] = local
            self.env["TODO_METRICS_PORT"] = str(local)
        if "--bind" in self.argv:
            at = self.argv.index("--bind") + 1
            local = free_port()
            self.ports[int(self.argv[at].rsplit(":", 1)[1])] = local
            self.argv[at] = f"127.0.0.1:{local}"

    def probe_url(self, probe: str) -> str:
        get = self.container[probe]["httpGet"]
        port = get["port"]
        if isinstance(port, str):
            (port,) = [p["containerPort"] for p in self.container["ports"] if p["name"] == port]
        return f"http://127.0.0.1:{self.ports[int(port)]}{get['path']}"

    def log(self) -> str:
        return (self.folder / "log").read_text(errors="replace")

    def run(self, timeout: float) -> int:
        with (self.folder / "log").open("wb") as log:
            return subprocess.run(
                self.argv,
                env=clean_env(**self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            env=clean_env(**self.env),
            stdout=(self.folder / "log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def answers(self, probe: str) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.log()}")
        try:
            return local_http.get(self.probe_url(probe), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def terminate(self) -> int:
        """SIGTERM, as the kubelet sends it; the exit code, or -1 if it outlived its grace."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(self.grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return -1


@pytest.mark.timeout(240)
def test_chart_commands_migrate_serve_flush_and_stop(
    postgres: str, redis_url: str, databases: DatabaseFactory, tmp_path: Path
) -> None:
    manifests = render(sets=("config.flushInterval=1",))
    database_url = databases.create("postgres", migrate=False)  # the migrations job does it
    prefix = f"todo-test-{uuid.uuid4().hex[:8]}:"

    def pod(kind: str, name: str) -> LocalPod:
        local = LocalPod(manifests, component(manifests, kind, name), tmp_path)
        local.localize(database_url, redis_url, prefix)
        return local

    migrations = pod("Job", "migrations")
    job = component(manifests, "Job", "migrations")
    assert migrations.run(timeout=job["spec"].get("activeDeadlineSeconds", 600)) == 0, (
        migrations.log()
    )

    api, worker, scheduler = (pod("Deployment", name) for name in ("api", "worker", "scheduler"))
    pods = [api, worker, scheduler]
    try:
        for local in pods:
            local.start()
        assert wait_until(lambda: api.answers("readinessProbe"), 60), api.log()
        assert wait_until(lambda: api.answers("livenessProbe"), 10), api.log()
        for local in (worker, scheduler):
            assert wait_until(lambda pod=local: pod.answers("livenessProbe"), 60), local.log()

        base = api.probe_url("readinessProbe").rsplit("/", 1)[0]
        add_user(database_url, "chart", "chart password")
        with local_http.client(
            base_url=base, auth=("chart", "chart password"), timeout=10
        ) as client:
            created = client.post("/api/v1.0/todos/", json={"name": "chart", "task": "runs"})
            assert created.status_code == 201, created.text
            url = created.headers["Location"]
            for _ in range(3):
                assert client.get(url).status_code == 200

            def flushed() -> Any:
                return client.get("/api/v1.0/stats").json()["hits"] == 3

            assert wait_until(flushed, 30), worker.log() + scheduler.log()
    finally:
        codes = {local.name: local.terminate() for local in pods if local.process is not None}
    assert codes == {"api": 0, "worker": 0, "scheduler": 0}, {
        local.name: local.log()[-2000:] for local in pods
    }


@pytest.mark.timeout(120)
def test_without_hooks_the_init_containers_wait_for_the_migrations_job(
    postgres: str, redis_url: str, databases: DatabaseFactory, tmp_path: Path
) -> None:
    manifests = render(sets=("migrations.useHooks=false",))
    database_url = databases.create("postgres", migrate=False)
    prefix = f"todo-test-{uuid.uuid4().hex[:8]}:"

    def local(workload: Manifest, container: dict[str, Any] | None = None) -> LocalPod:
        pod = LocalPod(manifests, workload, tmp_path, container)
        pod.localize(database_url, redis_url, prefix)
        return pod

    waits = []
    for name in ("api", "worker", "scheduler"):
        deployment = component(manifests, "Deployment", name)
        (init,) = pod_spec(deployment)["initContainers"]
        waits.append(local(deployment, init))
    for wait in waits:
        wait.start()  # as the GitOps tool applies everything at once: before the Job runs
    try:
        time.sleep(2)
        for wait in waits:
            assert wait.process is not None
            assert wait.process.poll() is None, wait.log()  # still waiting on the empty schema

        migrations = local(component(manifests, "Job", "migrations"))
        assert migrations.run(timeout=60) == 0, migrations.log()
        assert "upgraded from empty" in migrations.log()  # the waiters migrated nothing

        for wait in waits:
            assert wait.process is not None
            assert wait.process.wait(30) == 0, wait.log()
            assert f"database schema at {head_revision()}" in wait.log()
    finally:
        for wait in waits:
            if wait.process is not None and wait.process.poll() is None:
                wait.process.kill()
