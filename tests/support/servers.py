"""Helpers for tests: real processes (todo-api, workers, schedulers), users, HTTP clients and
direct database reads. Throwaway servers are in tests.instances, client load in tests.load."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import local_http
from todo_common.db import create_engine, create_sessionmaker
from todo_common.models import User
from todo_common.security import hash_password
from todo_common.settings import Settings

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_ADMIN_DSN = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
BIN = Path(sys.executable).parent


def fresh_address() -> str:
    """A client address no other test uses, to send as X-Forwarded-For (rate limits and the
    password window count per address)."""
    number = uuid.uuid4().int
    return f"10.{number % 250}.{(number >> 8) % 250}.{(number >> 16) % 250 + 1}"


def new_key_prefix() -> str:
    """A Redis key prefix no other test uses."""
    return f"todo-test-{uuid.uuid4().hex[:8]}:"


def delete_keys(redis_url: str, prefix: str) -> None:
    """Delete every Redis key under `prefix` (a test's own, once it is done)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**overrides: str) -> dict[str, str]:
    """The test process's environment without any TODO_* leaking in, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TODO_", "PROMETHEUS_"))}
    env.update({"TODO_ENV": "test", "TODO_LOG_FORMAT": "json"})
    env.update(overrides)
    return env


def answers_ok(url: str, timeout: float = 1) -> bool:
    """Whether `url` answers 200 now (a connection error or timeout is a no)."""
    try:
        return local_http.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def json_records(log: str) -> list[dict[str, object]]:
    """The JSON records of a process's log (other lines, such as Celery's warnings, skipped)."""
    records = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def connection_refused(url: str) -> bool:
    """Whether a new TCP connection to `url`'s host and port is refused now."""
    address = httpx.URL(url)
    try:
        with socket.create_connection((address.host, address.port or 80), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def fetch(database_url: str, query: str, *args: object) -> list[asyncpg.Record]:
    """Rows of `query` run directly on a PostgreSQL database given by its SQLAlchemy URL."""

    async def _fetch() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url.replace("+asyncpg", "", 1))
        try:
            return list(await connection.fetch(query, *args))
        finally:
            await connection.close()

    return asyncio.run(_fetch())


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def scrape(base_url: str, metric: str, **labels: str) -> float:
    """The sum of the samples of `metric` at `base_url`/metrics whose labels include `labels`
    (0 when there are none)."""
    text = local_http.get(f"{base_url}/metrics", timeout=5).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and labels.items() <= sample.labels.items():
                total += sample.value
    return total


@dataclass
class ApiServer:
    process: subprocess.Popen[bytes]
    url: str
    env: dict[str, str]
    log_path: Path
    users: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.env["TODO_DATABASE_URL"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, object]]:
        """The JSON log records so far (one `request` record per request the app answered)."""
        return json_records(self.log())

    def client(self, auth: httpx.Auth | tuple[str, str] | None = None, **kwargs) -> httpx.Client:  # type: ignore[no-untyped-def]
        return local_http.client(base_url=self.url, auth=auth, timeout=10, **kwargs)

    def add_user(self, password: str = "correct horse") -> tuple[str, str]:
        """Register a uniquely named user in this server's database; returns (name, password)."""
        name = f"user-{uuid.uuid4().hex[:10]}"
        add_user(self.database_url, name, password)
        return name, password

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@functools.cache
def password_hash(password: str) -> str:
    """One Argon2 hash per password for the whole run: hashing costs 0.1 s of CPU on purpose, and
    tests add hundreds of users (todoctl's and the API's own user creation are tested as such)."""
    return hash_password(password)


def add_user(database_url: str, name: str, password: str) -> int:
    """Register a user directly in the database; returns its id."""

    async def _add() -> int:
        engine = create_engine(Settings(database_url=database_url))
        try:
            async with create_sessionmaker(engine)() as session:
                user = User(username=name, password_hash=password_hash(password))
                session.add(user)
                await session.commit()
                return user.id
        finally:
            await engine.dispose()

    return asyncio.run(_add())


def start_api(
    settings: dict[str, str], folder: Path, workers: int = 1, wait: bool = True
) -> ApiServer:
    port = free_port()
    log_path = folder / f"api-{port}.log"
    env = clean_env(**settings)
    process = subprocess.Popen(
        [str(BIN / "todo-api"), "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = ApiServer(process, f"http://127.0.0.1:{port}", env, log_path)
    if wait:
        wait_for_http(server)
    return server


def wait_for_http(server: ApiServer, timeout: float = 30) -> None:
    def up() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"todo-api exited early:\n{server.log()}")
        return answers_ok(f"{server.url}/healthz")

    if not wait_until(up, timeout):
        server.stop(signal.SIGKILL)
        raise RuntimeError(f"todo-api did not answer within {timeout}s:\n{server.log()}")


@dataclass
class ServiceProcess:
    """A running `todo-worker` or `todo-scheduler`, with its log and metrics endpoint."""

    name: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path
    metrics_port: int

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, object]]:
        """The JSON log records so far (non-JSON lines, such as Celery's warnings, skipped)."""
        return json_records(self.log())

    def metric(self, metric: str, **labels: str) -> float:
        """The sum of `metric`'s samples whose labels include `labels` (0 when there are none)."""
        return scrape(self.metrics_url, metric, **labels)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool children at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def start_service(
    command: str, settings: dict[str, str], folder: Path, *args: str, wait: bool = True
) -> ServiceProcess:
    """Start `todo-worker` or `todo-scheduler` in a process group of its own."""
    port = free_port()
    log_path = folder / f"{command}-{port}.log"
    env = clean_env(**settings, TODO_METRICS_PORT=str(port))
    env.setdefault("TODO_STATE_DIR", str(folder / f"state-{port}"))
    process = subprocess.Popen(
        [str(BIN / command), *args],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    service = ServiceProcess(command, process, env, log_path, port)
    if wait:

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited early:\n{service.log()}")
            return answers_ok(f"{service.metrics_url}/healthz")

        if not wait_until(healthy, 30):
            service.kill()
            raise RuntimeError(f"{command} did not come up:\n{service.log()}")
    return service


def start_worker(settings: dict[str, str], folder: Path, *args: str) -> ServiceProcess:
    worker = start_service("todo-worker", settings, folder, "--concurrency", "1", *args)
    # Consuming starts after the metrics server: wait for Celery's "ready".
    if not wait_until(lambda: "ready" in worker.log(), 30):
        worker.kill()
        raise RuntimeError(f"todo-worker never became ready:\n{worker.log()}")
    return worker


def need_program(name: str, path: str | None) -> str:
    """`path` of program `name`, or skip the test (fail it under CI=true) when it is missing."""
    if path is not None:
        return path
    reason = f"{name} is not installed"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing program is a failure)")
    pytest.skip(reason)


def get_token(server: ApiServer, user: tuple[str, str]) -> str:
    with server.client(auth=user) as http:
        response = http.get("/auth/request-token")
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token
