"""Helpers for tests: real processes (todo-api, workers, redis-server, throwaway PostgreSQL
clusters), users and HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from todo_common.db import create_engine, create_sessionmaker
from todo_common.migrate import upgrade_database
from todo_common.settings import Settings
from todo_common.users import create_user

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_ADMIN_DSN = f"postgresql://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
BIN = Path(sys.executable).parent


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
        return httpx.get(url, timeout=timeout).status_code == 200
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
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
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
        return httpx.Client(base_url=self.url, auth=auth, timeout=10, **kwargs)

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


def add_user(database_url: str, name: str, password: str) -> int:
    """Register a user directly in the database; returns its id."""

    async def _add() -> int:
        engine = create_engine(Settings(database_url=database_url))
        try:
            async with create_sessionmaker(engine)() as session:
                return (await create_user(session, name, password)).id
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
class RedisServer:
    """A throwaway redis-server on a free port, which a test may stop and start again."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        if not wait_until(answers, 10):
            raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def shutdown_keeping_data(self) -> None:
        """Stop the way a Redis with persistence stops: write the data set to dump.rdb in the
        folder, then exit; `start()` loads it again (this server otherwise never saves)."""
        assert self.process is not None
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"SHUTDOWN SAVE\r\n")
            sock.recv(1024)  # the server closes the connection once it has saved
        self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


class RoundTripCounter:
    """A TCP proxy that counts a client's round trips to a server (PostgreSQL, Redis, ...).

    A round trip is the client speaking after the server has answered (or speaking first), so
    pipelined commands sent together count once, exactly as the network sees them.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.round_trips = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        answered = True  # the client's first bytes start a round trip

        async def backward() -> None:
            nonlocal answered
            while data := await server_r.read(65536):
                answered = True
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        pump = asyncio.ensure_future(backward())
        try:
            while data := await client_r.read(65536):
                if answered:
                    self.round_trips += 1
                    answered = False
                server_w.write(data)
                await server_w.drain()
        except ConnectionError:
            pass
        finally:
            server_w.close()
            pump.cancel()


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


def postgres_binary(name: str) -> str | None:
    """A PostgreSQL server program (initdb, pg_ctl), newest installed version first."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    return shutil.which(name)


class PostgresCluster:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free port, which a test may stop,
    kill, freeze and start again without touching the shared server.

    initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user, in a
    folder of its own outside pytest's (private) temp folders. fsync is off: these clusters only
    have to survive their processes dying, never the machine.
    """

    def __init__(self) -> None:
        initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("PostgreSQL server programs (initdb, pg_ctl) are not installed")
        self.pg_ctl = pg_ctl
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="todo-pg-"))
        self.data = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._as_owner(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def _as_owner(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c full_page_writes=off"
        )
        self._as_owner(
            self.pg_ctl,
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast`: a clean shutdown (clients are disconnected); `immediate`: every server process
        quits at once, without a checkpoint, as if killed (crash recovery on the next start)."""
        self._as_owner(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def _pids(self) -> list[int]:
        """The postmaster and every process it has forked (backends, checkpointer, ...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [postmaster, *(int(pid) for pid in children)]

    def freeze(self) -> None:
        """SIGSTOP the whole server: connections stay open but nothing answers (a hung
        server or a network that drops packets)."""
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def create_database(self, name: str = "todo") -> str:
        """Create and migrate database `name`; returns its SQLAlchemy URL."""

        async def create() -> None:
            connection = await asyncpg.connect(self.admin_dsn)
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        asyncio.run(create())
        url = self.url(name)
        asyncio.run(upgrade_database(Settings(database_url=url)))
        return url

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.thaw()
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


TODOS_PATH = "/api/v1.0/todos/"


@dataclass(frozen=True)
class Outcome:
    """One request of a load run: when it was sent and answered (time.monotonic()), and how."""

    name: str
    started: float
    finished: float
    status: int | None  # None: no HTTP response at all (`error` says why)
    headers: dict[str, str]
    body: str
    error: str | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def json(self) -> object:
        return json.loads(self.body)

    def __str__(self) -> str:
        answer = self.status if self.status is not None else self.error
        return f"{self.name} -> {answer} in {self.seconds:.2f}s: {self.body[:200]}"


class Load:
    """Client threads hammering the API until stopped, each as a user of its own: POST a todo,
    GET the list, GET a todo, over and over. Every outcome is kept, for the test to check them
    all; use as a context manager (stopping waits for the requests in flight)."""

    def __init__(
        self, server: ApiServer, clients: int = 4, pause: float = 0.005, timeout: float = 30
    ) -> None:
        self.server = server
        self.users = [server.add_user() for _ in range(clients)]
        self.pause = pause
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        for user in self.users:
            thread = threading.Thread(target=self._client, args=(user,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.outcomes

    def between(self, start: float, end: float) -> list[Outcome]:
        """The outcomes of requests sent at or after `start` and answered by `end`."""
        return [o for o in list(self.outcomes) if start <= o.started and o.finished <= end]

    def since(self, start: float) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.started >= start]

    def _client(self, user: tuple[str, str]) -> None:
        item: str | None = None
        with httpx.Client(base_url=self.server.url, auth=user, timeout=self.timeout) as http:
            while not self._stop.is_set():
                created = self._send(http, "POST", TODOS_PATH, {"name": "load", "task": "go"})
                if created is not None and created.status_code == 201:
                    item = created.headers["Location"]
                for _ in range(3):
                    self._send(http, "GET", TODOS_PATH)
                    if item is not None:
                        self._send(http, "GET", item)
                    time.sleep(self.pause)

    def _send(
        self, http: httpx.Client, method: str, url: str, body: object = None
    ) -> httpx.Response | None:
        name = f"{method} {'list' if url == TODOS_PATH and method == 'GET' else url}"
        started = time.monotonic()
        try:
            response = http.request(method, url, json=body)
        except httpx.HTTPError as error:
            self.outcomes.append(
                Outcome(name, started, time.monotonic(), None, {}, "", repr(error))
            )
            return None
        self.outcomes.append(
            Outcome(
                name,
                started,
                time.monotonic(),
                response.status_code,
                dict(response.headers),
                response.text,
            )
        )
        return response


def need_program(name: str, path: str | None) -> str:
    """`path` of program `name`, or skip the test (fail it under CI=true) when it is missing."""
    if path is not None:
        return path
    reason = f"{name} is not installed"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing program is a failure)")
    pytest.skip(reason)
