"""`make bench`: drive a real `todo-api` (2 hypercorn workers, uvloop, PostgreSQL, Redis, token
auth, rate limits on but high, hit counting on, metrics on, the access log at info in JSON, written
to bench/results/api-*.log) with wrk, next to a bare Quart ceiling, and report per endpoint req/s,
p50, p99 (also as a multiple of the ceiling's), errors, the new PostgreSQL sessions of each round
(pool churn), the ratio to the ceiling and which goal of issue 12 the row meets: a table on stdout
and a JSON file in bench/results/. Any error or unexpected status fails the run; the seeded data is
checked first.

Settings (environment): BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_WARMUP (3), BENCH_DEEP (100000
todos for the depth test), BENCH_POSTGRES (postgresql://postgres@127.0.0.1:5432/postgres),
BENCH_REDIS (redis://127.0.0.1:6379/0).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench.login import login_medians
from bench.servers import (
    WORKERS,
    Server,
    argon2_verifications_per_second,
    start_api,
    start_ceiling,
)
from bench.wrk import CONNECTIONS, THREADS, Result, run_wrk
from todo_api.conditional import todo_tag
from todo_common.security import issue_token

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"  # git-ignored
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "3"))
DEEP = int(os.environ.get("BENCH_DEEP", "100000"))
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/0")
# Enough that no PUT round touches a todo twice: each wrk thread has WRITER_TODOS / THREADS, and
# a 10 s round at 5000 req/s sends 25000 per thread.
WRITER_TODOS = 100_000
# POST spread over this many users (each wrk thread takes its share), next to POST by one user: the
# user's row in todo_counts, updated by every create, is a hot spot only the second one shows.
POSTERS = 32
SECRET = uuid.uuid4().hex * 2
PASSWORD = "bench password"
# Issue 12's goals: ratio to the ceiling (goal, floor) per row.
GOALS = {
    "GET item (token)": (0.60, 0.50),
    "GET item 304 (If-None-Match)": (0.65, 0.55),
    "GET list page 1": (0.45, 0.35),
    f"GET list page {DEEP // 10} (next)": (0.45, 0.35),
    f"POST create, {POSTERS} users": (0.30, 0.22),
    "PUT with If-Match": (0.30, 0.22),
}


@dataclass
class Row:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    new_sessions: list[int]  # PostgreSQL sessions opened during each round
    ratio: float = 0.0
    p99_ratio: float = 0.0
    goal: str = ""


async def seed(dsn: str) -> dict[str, int]:
    """Users and todos, inserted in bulk; returns the user ids."""
    import asyncpg

    from todo_common.security import hash_password

    password_hash = hash_password(PASSWORD)
    sizes = {"reader": 1000, "deep": DEEP, "writer": WRITER_TODOS, "poster": 0}
    sizes.update({f"poster-{number}": 0 for number in range(POSTERS)})
    connection = await asyncpg.connect(dsn)
    try:
        ids = {}
        for name, todos in sizes.items():
            user = await connection.fetchval(
                "INSERT INTO users (username, password_hash, created_at) "
                "VALUES ($1, $2, now()) RETURNING id",
                name,
                password_hash,
            )
            await connection.execute(
                "INSERT INTO todos (owner_id, name, task, created_at, version) "
                "SELECT $1, 'todo ' || n, 'a task to benchmark', now(), 1 "
                "FROM generate_series(1, $2) AS n",
                user,
                todos,
            )
            await connection.execute(
                "INSERT INTO todo_counts (owner_id, todos) VALUES ($1, $2)", user, todos
            )
            ids[name] = int(user)
        await connection.execute("ANALYZE")
        return ids
    finally:
        await connection.close()


def verify(http: httpx.Client, headers: dict[str, str], total: int) -> list[str]:
    """Check what was seeded through the API itself; returns the first page's todo URLs."""
    response = http.get("/api/v1.0/todos/", headers=headers)
    response.raise_for_status()
    body = response.json()
    if body["meta"]["total"] != total or len(body["urls"]) != min(10, total):
        raise SystemExit(f"bench: seeded {total} todos but the API shows {body['meta']}")
    return list(body["urls"])


def pg_sessions(database: str) -> int:
    """Sessions PostgreSQL has opened on `database` so far (read from another database)."""
    query = f"SELECT sessions FROM pg_stat_database WHERE datname = '{database}'"
    listed = subprocess.run(
        ["psql", POSTGRES, "-Atc", query], check=True, capture_output=True, text=True
    ).stdout
    return int(listed.strip() or 0)


def measure(
    name: str,
    url: str,
    env: dict[str, str],
    database: str,
    script: str = "request.lua",
    before_each: Callable[[], dict[str, str]] = dict,
) -> Row:
    """wrk's warm-up, then ROUNDS runs; `before_each` adds environment for each run."""
    lua = str(HERE / "wrk" / script)
    run_wrk(url, lua, {**env, **before_each()}, WARMUP)
    results: list[Result] = []
    new_sessions: list[int] = []
    for _ in range(ROUNDS):
        round_env = {**env, **before_each()}
        sessions = pg_sessions(database)
        results.append(run_wrk(url, lua, round_env, SECONDS))
        new_sessions.append(pg_sessions(database) - sessions)
    row = Row(
        name,
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
        new_sessions,
    )
    print(
        f"  {name:<28} {row.rps:>9.0f} req/s  p50 {row.p50_ms:6.2f} ms  p99 {row.p99_ms:6.2f} ms"
        f"  new PG sessions {'/'.join(map(str, new_sessions))}"
    )
    return row


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed (Debian: apt-get install wrk)")
    database = f"todo_bench_{uuid.uuid4().hex[:8]}"
    database_url = POSTGRES.rsplit("/", 1)[0] + f"/{database}"
    subprocess.run(["psql", POSTGRES, "-qc", f'CREATE DATABASE "{database}"'], check=True)
    servers: list[Server] = []
    try:
        env = {
            "TODO_DATABASE_URL": database_url.replace("postgresql://", "postgresql+asyncpg://"),
            "TODO_REDIS_URL": REDIS,
            "TODO_REDIS_KEY_PREFIX": f"todo-bench-{uuid.uuid4().hex[:8]}:",
            "TODO_SECRET_KEY": SECRET,
            "TODO_USE_TOKEN_AUTH": "true",
            "TODO_USE_RATE_LIMITS": "true",
            "TODO_RATE_LIMIT": "100000000/1h",
            "TODO_LOG_LEVEL": "info",
            "TODO_LOG_FORMAT": "json",
            # The pool rule (README, Configuration): each worker serves 32 / 2 connections at once.
            "TODO_DB_POOL_SIZE": str(CONNECTIONS // int(WORKERS)),
        }
        subprocess.run(
            [str(Path(sys.executable).parent / "todoctl"), "migrate"],
            check=True,
            env={**os.environ, **env},
            capture_output=True,
        )
        users = asyncio.run(seed(database_url))
        RESULTS.mkdir(exist_ok=True)
        ceiling = start_ceiling()
        api = start_api(env, RESULTS / "api.log")
        plain = start_api(
            {**env, "TODO_COUNT_HITS": "false", "TODO_HTTP_METRICS": "false"},
            RESULTS / "api-plain.log",
        )
        # HTTP Basic
        passwords = start_api({**env, "TODO_USE_TOKEN_AUTH": "false"}, RESULTS / "api-basic.log")
        servers += [ceiling, api, plain, passwords]

        def bearer(user: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {issue_token(SECRET, users[user], 3600)}"}

        def wrk_env(headers: dict[str, str], **extra: str) -> dict[str, str]:
            return {"BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in headers.items()), **extra}

        with httpx.Client(base_url=api.url, timeout=30) as http:
            reader = bearer("reader")
            item = verify(http, reader, 1000)[0]
            verify(http, bearer("deep"), DEEP)
            tag = http.get(item, headers=reader).headers["ETag"]
            if http.get(item, headers={**reader, "If-None-Match": tag}).status_code != 304:
                raise SystemExit("bench: a matching If-None-Match did not give 304")
            # The depth test follows the server's own `next` link to the last page.
            deep = bearer("deep")
            last_but_one = http.get(
                "/api/v1.0/todos/", params={"page": DEEP // 10 - 1}, headers=deep
            ).json()["meta"]["next"]
            last_page = http.get(last_but_one, headers=deep).json()
            if len(last_page["urls"]) != 10 or last_page["meta"]["next"] is not None:
                raise SystemExit("bench: the deep next link did not reach the last page")
        if b'"event":"request"' not in (RESULTS / "api.log").read_bytes():
            raise SystemExit("bench: the API wrote no access line: the log is not at info")
        rss_before = api.rss_mib()
        basic = httpx.BasicAuth("reader", PASSWORD)._auth_header  # type: ignore[attr-defined]
        rows = [measure("ceiling (bare Quart)", ceiling.url + "/", {}, database)]
        rows.append(measure("GET item (token)", item, wrk_env(reader), database))
        rows.append(
            measure(
                "GET item 304 (If-None-Match)",
                item,
                wrk_env({**reader, "If-None-Match": tag}),
                database,
            )
        )
        rows.append(
            measure("GET list page 1", f"{api.url}/api/v1.0/todos/", wrk_env(reader), database)
        )
        rows.append(
            measure(f"GET list page {DEEP // 10} (next)", last_but_one, wrk_env(deep), database)
        )
        create = {"BENCH_METHOD": "POST", "BENCH_BODY": '{"name": "n", "task": "t"}'}
        posters = [bearer(f"poster-{number}")["Authorization"] for number in range(POSTERS)]
        rows.append(
            measure(
                f"POST create, {POSTERS} users",
                f"{api.url}/api/v1.0/todos/",
                # One list per wrk thread, so requests in flight at once are different users'.
                {
                    "BENCH_AUTHORIZATIONS": ";".join(
                        ",".join(posters[t::THREADS]) for t in range(THREADS)
                    ),
                    **create,
                },
                database,
            )
        )
        rows.append(
            measure(
                "POST create, one busy user",
                f"{api.url}/api/v1.0/todos/",
                wrk_env(bearer("poster"), **create),
                database,
            )
        )

        versions_file = RESULTS / "put-versions.txt"

        def current_versions() -> dict[str, str]:
            """Each wrk run starts from the todos' versions in the database, once the last run's
            requests in flight have finished. No todo is visited twice in a run, so a request
            wrk built but never sent cannot leave the script's idea of a version behind."""
            time.sleep(3)
            query = (
                "SELECT id || ':' || version FROM todos "
                f"WHERE owner_id = {users['writer']} ORDER BY id"
            )
            listed = subprocess.run(
                ["psql", database_url, "-Atc", query], check=True, capture_output=True, text=True
            ).stdout.split()
            # Each todo's current ETag, as GET would send it (If-Match compares the whole tag).
            tags = [
                f"{todo_id}:{todo_tag(int(todo_id), int(version))}"
                for todo_id, version in (row.split(":") for row in listed)
            ]
            half = len(tags) // 2
            versions_file.write_text(",".join(tags[:half]) + ";" + ",".join(tags[half:]))
            return {"BENCH_IDS_FILE": str(versions_file)}

        rows.append(
            measure(
                "PUT with If-Match",
                api.url,
                wrk_env(bearer("writer")),
                database,
                "put_if_match.lua",
                current_versions,
            )
        )
        rows.append(measure("GET /stats", f"{api.url}/api/v1.0/stats", wrk_env(reader), database))
        basic_item = passwords.url + item.removeprefix(api.url)
        for _ in range(8):  # one Argon2id check per worker first, not 32 at once under wrk
            httpx.get(basic_item, auth=("reader", PASSWORD), timeout=30).raise_for_status()
        rows.append(
            measure(
                "GET item (HTTP Basic)", basic_item, wrk_env({"Authorization": basic}), database
            )
        )
        plain_item = plain.url + item.removeprefix(api.url)
        rows.append(measure("GET item, no hits/metrics", plain_item, wrk_env(reader), database))
        rss_after = api.rss_mib()
        argon2 = argon2_verifications_per_second()
        login = login_medians(api.url, "reader")
    finally:
        for server in servers:
            server.stop()
        subprocess.run(
            ["psql", POSTGRES, "-qc", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'],
            check=False,
        )
    report(rows, rss_before, rss_after, argon2, login)


def verdict(ratio: float, goal: float, floor: float) -> str:
    if ratio >= goal:
        return f"met (>= {goal:.2f})"
    if ratio >= floor:
        return f"floor {floor:.2f} met, goal {goal:.2f} missed by {goal - ratio:.2f}"
    return f"missed: below the floor {floor:.2f} by {floor - ratio:.2f}"


def judge(rows: list[Row]) -> None:
    """Each row's ratios to the ceiling, and what it says about issue 12's goal for the row."""
    ceiling = rows[0]
    for row in rows:
        row.ratio = row.rps / ceiling.rps if ceiling.rps else 0.0
        row.p99_ratio = row.p99_ms / ceiling.p99_ms if ceiling.p99_ms else 0.0
        if row.name in GOALS:
            row.goal = verdict(row.ratio, *GOALS[row.name])
    by_name = {row.name: row for row in rows}
    token = by_name["GET item (token)"]
    token.goal += f"; p99 <= 2x ceiling's: {'met' if token.p99_ratio <= 2 else 'missed'}"
    basic = by_name["GET item (HTTP Basic)"]
    within = basic.rps >= 0.9 * token.rps
    basic.goal = (
        f"within 10% of token GET: {'met' if within else 'missed'} "
        f"({basic.rps / token.rps:.2f} of it)"
    )
    busy = by_name["POST create, one busy user"]
    spread = by_name[f"POST create, {POSTERS} users"]
    busy.goal = f"none (hot spot: {busy.rps / spread.rps:.2f} of the {POSTERS}-user POST)"


def report(
    rows: list[Row],
    rss_before: float,
    rss_after: float,
    argon2: float,
    login: tuple[float, float],
) -> None:
    judge(rows)
    lines = [
        "| endpoint | req/s | p50 ms | p99 ms | p99 x ceiling's | errors | new PG sessions "
        "per round | x ceiling | issue 12 goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *(
            f"| {r.name} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.p99_ratio:.1f} | "
            f"{r.errors} | {' / '.join(map(str, r.new_sessions))} | {r.ratio:.2f} | "
            f"{r.goal or '-'} |"
            for r in rows
        ),
    ]
    print("\n" + "\n".join(lines))
    print(f"\nAPI RSS (2 workers + parent): {rss_before:.0f} MiB before, {rss_after:.0f} MiB after")
    print(f"Argon2id verifications per second, 2 processes: {argon2:.0f}")
    print(
        f"Refused login, median: unknown user {login[0]:.1f} ms, wrong password {login[1]:.1f} ms"
        f" (ratio {login[0] / login[1]:.2f})"
    )
    out = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "seconds": SECONDS,
                "rounds": ROUNDS,
                "deep": DEEP,
                "cpus": os.cpu_count(),
                "rows": [asdict(r) for r in rows],
                "rss_mib": [rss_before, rss_after],
                "argon2_per_second": argon2,
                "login_median_ms": {"unknown_user": login[0], "wrong_password": login[1]},
            },
            indent=2,
        )
    )
    print(f"written to {out.relative_to(HERE.parent)}")
    failed = [row.name for row in rows if row.errors]
    if failed:
        raise SystemExit(f"bench: errors or unexpected statuses in: {', '.join(failed)}")


if __name__ == "__main__":
    main()
