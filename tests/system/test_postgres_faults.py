"""PostgreSQL failing under load: requests get a prompt 503 (JSON error body, Retry-After), never a
500 or a hang; /readyz turns 503 while /healthz stays 200; once the database is back the same API
process serves 2xx again within 5 seconds.

Each test has a throwaway cluster of its own (`PostgresCluster`), so it can stop, kill or freeze
the server: a clean shutdown (`pg_ctl stop -m fast`: clients are told, then disconnected), a
crash (`-m immediate`: every server process quits at once, crash recovery on restart), and a hang
(SIGSTOP: connections stay open but nothing answers, as when a network drops packets; only the
API's timeouts help).
"""

from __future__ import annotations

import base64
import concurrent.futures
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import local_http
from tests.support.instances import PostgresCluster, postgres_binary
from tests.support.load import Load, Outcome
from tests.support.servers import ApiServer, need_program, start_api, wait_until

pytestmark = [pytest.mark.timeout(60), pytest.mark.serial]

# Against a frozen server each request waits for a timeout, so it takes longer to see enough.
OUTAGE_SECONDS = {"fast": 3.0, "immediate": 3.0, "frozen": 6.0}
RECOVERY_SECONDS = 5.0  # the API must serve 2xx again this soon after the database is back
# Once one request has succeeded again, every request sent this long after it must succeed too
# (connections the outage broke are replaced by then); watched for WATCH_SETTLED_SECONDS.
SETTLING_SECONDS = 1.0
WATCH_SETTLED_SECONDS = 2.0
# A frozen server is only detected by timeouts; these keep the test short (defaults: 5 s, 10 s).
FROZEN_ENV = {"TODO_DB_TIMEOUT": "1", "TODO_DB_STATEMENT_TIMEOUT": "1"}
# The longest a request may take after the fault: refused connections fail at once; against a
# frozen server a request waits at most for a connection (1 s) or for a statement (1 s + 1 s).
# The rest is margin for a busy machine.
SLOWEST = {"fast": 3.0, "immediate": 3.0, "frozen": 4.5}
LEAST_LOAD_DURING_OUTAGE = {"fast": 20, "immediate": 20, "frozen": 8}


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    need_program("initdb", postgres_binary("initdb"))
    need_program("pg_ctl", postgres_binary("pg_ctl"))
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def api_on(cluster: PostgresCluster, tmp_path: Path) -> Iterator[dict[str, ApiServer]]:
    """Call `start(env)` for a todo-api on the cluster's migrated database; stopped afterwards."""
    started: dict[str, ApiServer] = {}
    yield started
    for server in started.values():
        server.stop()


def start(cluster: PostgresCluster, folder: Path, started: dict[str, ApiServer], **env: str):  # type: ignore[no-untyped-def]
    api = start_api({"TODO_DATABASE_URL": cluster.create_database(), **env}, folder)
    started["api"] = api
    return api


def unavailable(outcome: Outcome) -> bool:
    """A 503 in the API's error format, with a Retry-After."""
    if outcome.status != 503:
        return False
    body = outcome.json()
    return (
        isinstance(body, dict)
        and body["status"] == 503
        and body["error"] == "service unavailable"
        and body["title"] == "Service Unavailable"
        and bool(body["message"])
        and int(outcome.headers["retry-after"]) >= 1
        and outcome.headers["content-type"] == "application/json"
    )


def successes_since(load: Load, start: float) -> list[Outcome]:
    return [o for o in load.since(start) if o.status in (200, 201)]


def probe(api: ApiServer, path: str) -> httpx.Response:
    return local_http.get(f"{api.url}{path}", timeout=10)


def break_database(cluster: PostgresCluster, fault: str) -> None:
    if fault == "frozen":
        cluster.freeze()
    else:
        cluster.stop(fault)


def mend_database(cluster: PostgresCluster, fault: str) -> None:
    if fault == "frozen":
        cluster.thaw()
    else:
        cluster.start()


@pytest.mark.parametrize("fault", ["fast", "immediate", "frozen"])
def test_postgres_outage_under_load_gives_503s_then_recovers(
    fault: str, cluster: PostgresCluster, api_on: dict[str, ApiServer], tmp_path: Path
) -> None:
    api = start(cluster, tmp_path, api_on, **(FROZEN_ENV if fault == "frozen" else {}))
    with Load(api) as load:
        assert wait_until(lambda: sum(o.status == 201 for o in load.outcomes) >= 4, 15)
        assert probe(api, "/readyz").status_code == 200
        warm = time.monotonic()  # every load client has logged in (its password checked once)

        break_database(cluster, fault)
        down = time.monotonic()
        assert wait_until(lambda: probe(api, "/readyz").status_code == 503, 5)
        readyz = probe(api, "/readyz")
        healthz = [probe(api, "/healthz").status_code]
        while time.monotonic() < down + OUTAGE_SECONDS[fault]:
            healthz.append(probe(api, "/healthz").status_code)
            time.sleep(0.2)
        up = time.monotonic()

        mend_database(cluster, fault)
        back = time.monotonic()
        assert wait_until(lambda: probe(api, "/readyz").status_code == 200, RECOVERY_SECONDS)
        assert wait_until(lambda: successes_since(load, back), RECOVERY_SECONDS)
        settled_from = min(o.finished for o in successes_since(load, back)) + SETTLING_SECONDS
        time.sleep(max(0.0, settled_from + WATCH_SETTLED_SECONDS - time.monotonic()))

    outcomes = load.outcomes
    wrong = [str(o) for o in outcomes if not (o.status in (200, 201) or unavailable(o))]
    assert not wrong, wrong[:10]  # no 500, no dropped connection, no malformed 503
    slowest = max(load.since(warm), key=lambda o: o.seconds)
    assert slowest.seconds < SLOWEST[fault], (
        f"no hang allowed: {slowest}, sent {slowest.started - down:.2f}s after the fault began"
        f" (outage ended at {up - down:.2f}s, database back at {back - down:.2f}s)"
    )

    during = load.between(down, up)
    assert len(during) >= LEAST_LOAD_DURING_OUTAGE[fault], f"only {len(during)} in the outage"
    assert all(o.status == 503 for o in during), [str(o) for o in during if o.status != 503]
    assert readyz.status_code == 503 and readyz.json()["status"] == 503
    assert "retry-after" in readyz.headers
    assert set(healthz) == {200}

    first_success = min(o.finished for o in successes_since(load, back)) - back
    assert first_success < RECOVERY_SECONDS, f"2xx again only after {first_success:.1f}s"
    settled = load.since(settled_from)
    assert settled and all(o.status in (200, 201) for o in settled), [
        str(o) for o in settled if o.status not in (200, 201)
    ][:10]

    assert api.process.poll() is None  # no restart: the same process throughout
    assert "database unavailable; answering 503" in api.log()
    assert '"level": "error"' not in api.log()  # an outage is not a bug: no tracebacks


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_connections_broken_by_a_restart_are_replaced_before_use(
    mode: str, cluster: PostgresCluster, api_on: dict[str, ApiServer], tmp_path: Path
) -> None:
    """A restart while the API is idle leaves its pool full of closed connections; the requests
    after it must get fresh ones, not errors."""
    api = start(cluster, tmp_path, api_on)
    user = api.add_user()

    def burst() -> list[int]:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda _: get_list(api, user), range(16)))

    assert burst() == [200] * 16  # fills the pool with several connections
    cluster.stop(mode)
    cluster.start()
    assert burst() == [200] * 16
    assert "database unavailable" not in api.log()


def get_list(api: ApiServer, user: tuple[str, str]) -> int:
    with api.client(auth=user) as http:
        return http.get("/api/v1.0/todos/").status_code


def test_a_503_before_the_body_arrived_keeps_the_connection_usable(
    cluster: PostgresCluster, api_on: dict[str, ApiServer], tmp_path: Path
) -> None:
    """The 503 comes from the authentication hook, before the handler reads the body. Answering
    before the body was in made hypercorn drop the connection silently after the response, so
    a client's next request on it got no answer; now the error waits for the body."""
    api = start(cluster, tmp_path, api_on)
    name, password = api.add_user()
    cluster.stop("fast")
    body = b'{"name": "late", "task": "body"}'
    credentials = base64.b64encode(f"{name}:{password}".encode()).decode()
    head = (
        f"POST /api/v1.0/todos/ HTTP/1.1\r\nHost: todo\r\nAuthorization: Basic {credentials}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", int(api.url.rsplit(":", 1)[1])), 10) as sock:
        sock.sendall(head.encode())
        time.sleep(0.3)  # the 503 is ready long before the body comes
        sock.sendall(body)
        first = read_response(sock)
        sock.sendall(b"GET /api/v1.0/todos/ HTTP/1.1\r\nHost: todo\r\n\r\n")
        second = read_response(sock)
    assert first.startswith(b"HTTP/1.1 503") and b"connection: close" not in first.lower()
    assert second.startswith(b"HTTP/1.1 401")  # answered on the same connection


def read_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (headers and a Content-Length body) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    (length,) = [
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    ]
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-body"
        rest += chunk
    return head + b"\r\n\r\n" + rest
