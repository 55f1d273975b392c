"""The whole stack through PgBouncer in transaction pooling mode (Debian's pgbouncer, a real
process): `todoctl migrate`, the API (Basic and token auth, CRUD, paging, If-Match races) and a
worker's hit-count flush all work with TODO_DB_PREPARED_STATEMENTS=false, over fewer PostgreSQL
sessions than they hold client connections. And why the setting exists: with prepared statements
on, a second process sharing a server session with the first fails."""

from __future__ import annotations

import subprocess
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import make_url

from tests.support.databases import DatabaseFactory
from tests.support.pgbouncer import SERVER_POOL_SIZE, PgBouncer, start_pgbouncer
from tests.support.servers import BIN, ApiServer, add_user, clean_env, fetch, get_token, start_api
from tests.support.stack import Stack, new_todo, running_stack, stats, view

TODOS = "/api/v1.0/todos/"
RACERS = 30


def database_name(url: str) -> str:
    return str(make_url(url).database)


def todoctl_migrate(
    database_url: str, prepared_statements: bool
) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        TODO_DATABASE_URL=database_url,
        TODO_DB_PREPARED_STATEMENTS=str(prepared_statements).lower(),
    )
    return subprocess.run(
        [str(BIN / "todoctl"), "migrate"], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def demo_database(postgres: str, databases: DatabaseFactory) -> str:
    """An empty database that PgBouncer reaches over a single server connection."""
    return databases.create("postgres", migrate=False)


@pytest.fixture(scope="module")
def bouncer(demo_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    bouncer = start_pgbouncer(
        tmp_path_factory.mktemp("pgbouncer"),
        single_connection_databases=(database_name(demo_database),),
    )
    yield bouncer
    bouncer.stop()


@pytest.fixture(scope="module")
def direct_url(postgres: str, databases: DatabaseFactory) -> str:
    """The stack's database, on PostgreSQL itself: empty until migrated through PgBouncer."""
    return databases.create("postgres", migrate=False)


@pytest.fixture(scope="module")
def stack(
    bouncer: PgBouncer, direct_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """An API, with hit counting, whose every database connection goes through PgBouncer."""
    folder = tmp_path_factory.mktemp("stack")
    bounced = bouncer.url(direct_url)
    migrated = todoctl_migrate(bounced, prepared_statements=False)
    assert migrated.returncode == 0, migrated.stderr
    with running_stack(bounced, redis_url, folder, TODO_DB_PREPARED_STATEMENTS="false") as stack:
        yield stack


@pytest.fixture(scope="module")
def token_api(stack: Stack) -> Iterator[ApiServer]:
    api = start_api({**stack.env, "TODO_USE_TOKEN_AUTH": "true"}, stack.folder)
    yield api
    api.stop()


def new_user(direct_url: str) -> tuple[str, str]:
    """A user added on PostgreSQL itself (the test process is not what is under test)."""
    name, password = f"user-{uuid.uuid4().hex[:10]}", "correct horse"
    add_user(direct_url, name, password)
    return name, password


def test_migrate_went_through_pgbouncer(stack: Stack, direct_url: str, bouncer: PgBouncer) -> None:
    revision = fetch(direct_url, "SELECT version_num FROM alembic_version")
    assert len(revision) == 1
    # PgBouncer logs each client login; todoctl's was one of them.
    assert f"db={database_name(direct_url)} user=postgres" in bouncer.log()
    # A second run finds the schema current, through the same pooled server sessions.
    again = todoctl_migrate(stack.env["TODO_DATABASE_URL"], prepared_statements=False)
    assert again.returncode == 0, again.stderr
    assert "already at" in again.stdout + again.stderr


def test_crud_and_paging(stack: Stack, direct_url: str) -> None:
    with stack.api.client(auth=new_user(direct_url)) as client:
        urls = [new_todo(client) for _ in range(5)]
        assert client.get(urls[0]).json()["task"] == "a book"
        changed = client.put(urls[0], json={"name": "write", "task": "a letter"})
        assert changed.status_code == 200, changed.text
        assert client.get(urls[0]).json()["name"] == "write"
        assert client.delete(urls[1]).status_code == 200
        assert client.get(urls[1]).status_code == 404

        seen: list[str] = []
        page: str | None = f"{TODOS}?per_page=2"
        while page:
            body = client.get(page).json()
            seen.extend(body["urls"])
            page = body["meta"]["next"]
        assert body["meta"]["total"] == 4
        assert sorted(seen) == sorted(urls[:1] + urls[2:])


def test_thirty_if_match_writers_exactly_one_wins_on_few_server_sessions(
    stack: Stack, direct_url: str
) -> None:
    user = new_user(direct_url)
    with stack.api.client(auth=user) as client:
        location = new_todo(client)
        etag = client.get(location).headers["ETag"]
    start = threading.Barrier(RACERS)

    def write(i: int) -> int:
        with stack.api.client(auth=user) as http:
            http.get("/healthz")  # connect before the barrier: the writes then leave together
            start.wait()
            response = http.put(
                location, json={"name": f"writer {i}", "task": "race"}, headers={"If-Match": etag}
            )
            return response.status_code

    with ThreadPoolExecutor(RACERS) as pool:
        statuses = list(pool.map(write, range(RACERS)))

    assert statuses.count(200) == 1, statuses
    assert statuses.count(412) == RACERS - 1, statuses
    with stack.api.client(auth=user) as client:
        assert client.get(location).json()["name"].startswith("writer ")
    # The API holds up to 10 client connections; PostgreSQL saw only PgBouncer's few sessions.
    sessions = fetch(
        direct_url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database_name(direct_url),
    )
    assert 1 <= sessions[0][0] <= SERVER_POOL_SIZE


def test_token_auth(token_api: ApiServer, direct_url: str) -> None:
    user = new_user(direct_url)
    token = get_token(token_api, user)
    with token_api.client(headers={"Authorization": f"Bearer {token}"}) as client:
        url = new_todo(client)
        assert client.get(url).status_code == 200
    with token_api.client(auth=user) as client:  # with token auth on, a password gets tokens only
        assert client.get(url).status_code == 401


def test_worker_flushes_hits(stack: Stack, direct_url: str) -> None:
    worker = stack.worker()
    with stack.api.client(auth=new_user(direct_url)) as client:
        url = new_todo(client)
        view(client, url, 3)
        stack.flush(worker)
        assert stats(client)["most_viewed"] == [{"url": url, "hits": 3}]


def test_prepared_statements_collide_across_processes(
    bouncer: PgBouncer, demo_database: str
) -> None:
    """Why TODO_DB_PREPARED_STATEMENTS exists. asyncpg names its prepared statements by a counter
    per process, and PgBouncer (here over one server session) keeps them on the server session
    between clients: the next process names its first statement the same."""
    bounced = bouncer.url(demo_database)
    first = todoctl_migrate(bounced, prepared_statements=True)
    assert first.returncode == 0, first.stderr

    second = todoctl_migrate(bounced, prepared_statements=True)
    assert second.returncode != 0
    assert "already exists" in second.stderr, second.stderr

    unprepared = todoctl_migrate(bounced, prepared_statements=False)
    assert unprepared.returncode == 0, unprepared.stderr
