"""The container tier: the three images built from deploy/docker/Dockerfile in an engine of the
tests' own, checked, and the rendered chart run as containers the way a cluster runs it.

Order as a cluster: the migrations Job (exit 0), then api, worker and scheduler with their own
probes on their real paths and ports, the `helm test` pod, a user made with `todoctl` inside the
api container, a todo whose views the worker and scheduler containers flush into `/stats`, and a
stop as the kubelet stops pods (preStop, SIGTERM, SIGKILL at the grace period) with a request in
flight at SIGTERM. Without hooks (GitOps), an api pod started before the migrations Job waits in
its init container and becomes ready once the Job is done, without a restart.

These run in make test's serial lane: one engine, and the pods use fixed ports on the host.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.chart import GITOPS_VALUES, Manifest, component, render
from tests.deploy.engine import SERVICES, Engine, image_tag
from tests.deploy.kubelet import Pod, ServiceProxy, cpus, memory_bytes
from tests.support import local_http
from tests.support.databases import DatabaseFactory
from tests.support.servers import (
    POSTGRES_HOST,
    POSTGRES_PORT,
    answers_ok,
    free_port,
    wait_until,
)

pytestmark = [pytest.mark.serial, pytest.mark.timeout(1500)]

# Hypercorn's pool, Celery and the rest must never need a compiler or a build tool at run time.
BUILD_TOOLS = ("gcc", "cc", "c++", "make", "uv", "git")
API_PORT = 8000  # what the chart's api command binds


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = Engine()
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def images(engine: Engine) -> float:
    """The three images, built by `make image`; the seconds it took."""
    base_images = engine.base_images()
    started = time.monotonic()
    engine.build_images(base_images)
    return time.monotonic() - started


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_runs_as_its_user_with_its_service_alone(
    service: str, engine: Engine, images: float, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = image_tag(service)
    (inspected,) = json.loads(engine.docker("image", "inspect", tag).stdout)
    assert inspected["Config"]["User"] == "10001:10001"

    look = (
        "import importlib.util, json, os, shutil; print(json.dumps({"
        "'uid': os.getuid(), 'gid': os.getgid(),"
        f"'packages': [p for p in ('todo_api', 'todo_worker', 'todo_scheduler', 'todo_common')"
        " if importlib.util.find_spec(p)],"
        f"'tools': [t for t in {BUILD_TOOLS!r} if shutil.which(t)],"
        "'source': os.path.exists('/src'), 'todoctl': bool(shutil.which('todoctl'))}))"
    )
    seen = json.loads(engine.docker("run", "--rm", "--entrypoint=python", tag, "-c", look).stdout)
    assert (seen["uid"], seen["gid"]) == (10001, 10001)
    assert seen["packages"] == [f"todo_{service}", "todo_common"]
    assert seen["tools"] == [] and not seen["source"]
    assert seen["todoctl"]

    with capsys.disabled():  # the size is a figure for the log, not a pass/fail
        size = inspected["Size"] / 2**20
        print(f"\nimage {tag}: {size:.0f} MiB (make image took {images:.1f} s for all three)")


@pytest.fixture
def database(databases: DatabaseFactory) -> str:
    """An empty database the migrations Job migrates, as the containers reach it."""
    url = databases.create("postgres", migrate=False)
    assert f"@{POSTGRES_HOST}:{POSTGRES_PORT}/" in url
    return url


def render_for_containers(database_url: str, *values: Path, **sets: str) -> list[Manifest]:
    """The chart, pointed at the local PostgreSQL and Redis and the images just built."""
    assignments = {
        "database.url": database_url,
        "redis.url": "redis://127.0.0.1:6379/0",
        "config.redisKeyPrefix": f"todo-test-{uuid.uuid4().hex[:8]}:",
        "image.tag": "test",
        "tests.enabled": "true",
        **sets,
    }
    return render(*values, sets=tuple(f"{key}={value}" for key, value in assignments.items()))


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[list[Pod]]:
    """Pods made by the test; their containers are removed at the end, whatever happened."""
    made: list[Pod] = []
    yield made
    for pod in made:
        pod.remove()


@pytest.mark.usefixtures("images")
def test_the_chart_runs_as_containers(
    engine: Engine, database: str, pods: list[Pod], tmp_path: Path
) -> None:
    service_port = free_port()
    manifests = render_for_containers(
        database, **{"config.flushInterval": "2", "api.service.port": str(service_port)}
    )
    api_service = component(manifests, "Service", "api")["metadata"]["name"]

    def pod(kind: str, name: str) -> Pod:
        made = Pod(engine, manifests, component(manifests, kind, name), tmp_path, (api_service,))
        pods.append(made)
        return made

    migrations = pod("Job", "migrations")
    assert migrations.run_to_completion(migrations.main) == 0, migrations.logs()

    api, worker, scheduler = (pod("Deployment", name) for name in ("api", "worker", "scheduler"))
    for started in (api, worker, scheduler):
        started.start()
    assert wait_until(lambda: api.probe("readinessProbe"), 60), api.logs()
    assert api.probe("livenessProbe"), api.logs()
    for started in (api, worker, scheduler):
        assert_confined_as_declared(started)
    for started in (worker, scheduler):
        for probe in ("readinessProbe", "livenessProbe"):
            assert wait_until(lambda p=started, k=probe: p.probe(k), 60), started.logs()

    proxy = ServiceProxy(service_port, API_PORT)
    try:
        helm_test = pod("Pod", "test")
        assert helm_test.run_to_completion(helm_test.main) == 0, helm_test.logs()
    finally:
        proxy.close()

    name, password = f"user-{uuid.uuid4().hex[:8]}", "container password"
    engine.docker(
        "exec", "--interactive", api.container_name(api.main),
        "todoctl", "adduser", "--password-stdin", name,
        input=f"{password}\n".encode(),
    )  # fmt: skip
    with local_http.client(
        base_url=f"http://127.0.0.1:{API_PORT}", auth=(name, password), timeout=10
    ) as client:
        created = client.post("/api/v1.0/todos/", json={"name": "container", "task": "runs"})
        assert created.status_code == 201, created.text
        url = created.headers["Location"]
        for _ in range(3):
            assert client.get(url).status_code == 200
        assert wait_until(lambda: client.get("/api/v1.0/stats").json()["hits"] == 3, 30), (
            worker.logs()[-3000:] + scheduler.logs()[-3000:]
        )
        in_flight = SlowRequest(name, password)
        status, seconds = api.stop(before_sigterm=in_flight.send_head)
        answer = in_flight.finish()

    assert (status, answer[:12]) == (0, "HTTP/1.1 201"), api.logs()[-3000:]
    assert seconds < api.grace
    for stopping in (worker, scheduler):
        status, seconds = stopping.stop()
        assert status == 0 and seconds < stopping.grace, stopping.logs()[-3000:]
        assert not stopping.state()["OOMKilled"]


def assert_confined_as_declared(pod: Pod) -> None:
    """The running container has the limits and restrictions its manifest asks for, and they
    hold: the root filesystem refuses a write (/var/run/todo belongs to the user, so only the
    read-only root stops it), the emptyDir mounts take one."""
    name = pod.container_name(pod.main)
    (inspected,) = json.loads(pod.engine.docker("inspect", name).stdout)
    host, limits = inspected["HostConfig"], pod.main["resources"]["limits"]
    assert inspected["Config"]["User"] == "10001:10001"
    assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == memory_bytes(str(limits["memory"]))
    assert host["NanoCpus"] == int(float(cpus(str(limits["cpu"]))) * 1e9)
    writes = "touch /var/run/todo/x 2>/dev/null && echo root; for d; do touch $d/x && echo $d; done"
    mounts = [mount["mountPath"] for mount in pod.main["volumeMounts"]]
    written = pod.engine.docker("exec", name, "sh", "-c", writes, "sh", *mounts, check=False)
    assert written.stdout.split() == mounts, written.stderr


class SlowRequest:
    """A POST whose head reaches the api before SIGTERM and whose body only after it."""

    BODY = b'{"name": "in flight", "task": "at SIGTERM"}'

    def __init__(self, name: str, password: str) -> None:
        credentials = base64.b64encode(f"{name}:{password}".encode()).decode()
        self.head = (
            f"POST /api/v1.0/todos/ HTTP/1.1\r\nHost: todo\r\nAuthorization: Basic {credentials}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(self.BODY)}\r\n\r\n"
        ).encode()
        self.answer = b""
        self.thread = threading.Thread(target=self._rest, daemon=True)

    def send_head(self) -> None:
        """The head and part of the body now; the rest a second later, from a thread."""
        self.sock = socket.create_connection(("127.0.0.1", API_PORT), timeout=20)
        self.sock.sendall(self.head + self.BODY[:10])
        self.thread.start()

    def _rest(self) -> None:
        with self.sock:
            time.sleep(1.0)  # SIGTERM is in by now: hypercorn drains, this request still comes
            self.sock.sendall(self.BODY[10:])
            while chunk := self.sock.recv(65536):
                self.answer += chunk

    def finish(self) -> str:
        self.thread.join(30)
        return self.answer.decode(errors="replace")


@pytest.mark.usefixtures("images")
def test_without_hooks_the_api_waits_for_the_migrations_job(
    engine: Engine, database: str, pods: list[Pod], tmp_path: Path
) -> None:
    manifests = render_for_containers(database, GITOPS_VALUES)
    job = component(manifests, "Job", "migrations")
    assert "helm.sh/hook" not in job["metadata"].get("annotations", {})
    api = Pod(engine, manifests, component(manifests, "Deployment", "api"), tmp_path)
    migrations = Pod(engine, manifests, job, tmp_path)
    pods.extend([api, migrations])

    waiting = api.start_init_containers()
    time.sleep(3)  # the schema is empty: the init container waits, the api has not started
    assert waiting.is_alive(), api.init_failure
    (init,) = api.spec["initContainers"]
    assert api.state(init)["Running"]

    assert migrations.run_to_completion(migrations.main) == 0, migrations.logs()
    waiting.join(60)
    assert not waiting.is_alive() and api.init_failure is None, api.init_failure
    assert api.state(init)["ExitCode"] == 0
    api.start_main()
    assert wait_until(lambda: api.probe("readinessProbe"), 60), api.logs()
    state: dict[str, Any] = api.state()
    assert state["Running"] and state["Restarting"] is False
    status, _ = api.stop()
    assert status == 0, api.logs()[-3000:]


@pytest.mark.usefixtures("images")
def test_docker_run_read_only_serves_with_the_readme_writable_paths(
    engine: Engine, databases: DatabaseFactory
) -> None:
    """The README's `docker run --read-only` line works as written; without its writable paths
    the api stops at start-up with one line naming the folder it cannot write."""
    settings = ["--env=TODO_DATABASE_URL=" + databases.create("postgres")]
    writable = [
        "--tmpfs=/tmp",
        "--tmpfs=/var/run/todo/metrics:uid=10001,gid=10001",
        "--tmpfs=/var/lib/todo:uid=10001,gid=10001",
    ]
    name = f"todo-readme-{uuid.uuid4().hex[:8]}"
    run = ["run", "--network=host", "--read-only", *settings]
    try:
        engine.docker(*run, "--detach", f"--name={name}", *writable, image_tag("api"))
        assert wait_until(lambda: answers_ok(f"http://127.0.0.1:{API_PORT}/readyz"), 60), (
            engine.docker("logs", name, check=False).stderr
        )
        assert answers_ok(f"http://127.0.0.1:{API_PORT}/healthz")
    finally:
        engine.docker("rm", "--force", name, check=False)

    refused = engine.docker(*run, "--rm", image_tag("api"), check=False, timeout=60)
    assert refused.returncode != 0
    lines = (refused.stdout + refused.stderr).strip().splitlines()
    assert len(lines) == 1 and "PROMETHEUS_MULTIPROC_DIR" in lines[0], lines
