"""`make soak`: the whole stack under a steady mixed load for a long while, to catch what only time
shows: errors that come and go, latency that creeps up, memory that leaks.

It starts `todo-api` as `make bench` does (2 hypercorn workers, PostgreSQL, Redis, token auth,
rate limits on but high, hit counting on) plus a `todo-worker` and a `todo-scheduler` flushing hit
counts, warms up, then drives a fixed rate of operations from SOAK_CLIENTS clients, each on its
own todos (GET item, GET list, POST, PUT with If-Match, DELETE), so every answer is predictable.
It prints p50/p99 per tenth of the run with the API's RSS, then the totals, and fails when any
request errs (a transport error or an unexpected status), when the API's RSS grew by 10% or more
after the warm-up, or when the worker applied no batch of hit counts.

Settings (environment): SOAK_SECONDS (600), SOAK_WARMUP (30), SOAK_RATE (200 operations/s, nearly
all one request each), SOAK_CLIENTS (16), BENCH_POSTGRES and BENCH_REDIS (as for `make bench`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

# The bench's seed makes a user with BENCH_DEEP todos for its depth test; the soak needs none.
os.environ.setdefault("BENCH_DEEP", "0")

from bench.run import POSTGRES, REDIS, SECRET, seed
from bench.servers import BIN, Server, _free_port, start_api
from todo_common.security import issue_token

HERE = Path(__file__).resolve().parent
SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
WARMUP = int(os.environ.get("SOAK_WARMUP", "30"))
RATE = float(os.environ.get("SOAK_RATE", "200"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "16"))
SLICES = 10
MAX_RSS_GROWTH = 0.10
FLUSH_INTERVAL = 10
TODOS = "/api/v1.0/todos/"
# Each client keeps between these many todos of its own: a steady table, a steady list.
FEWEST, MOST = 5, 20
WIDTHS = (7, 9, 7, 8, 8, 8)


@dataclass
class Load:
    """Every request's outcome; latencies kept from the measured run's start."""

    started: float = 0.0  # when the measured run began (0: still warming up)
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (end, seconds)

    async def call(
        self, http: httpx.AsyncClient, method: str, url: str, expected: int, **kwargs: object
    ) -> httpx.Response | None:
        began = time.perf_counter()
        try:
            response = await http.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            self.requests += 1
            self.errors.append(f"{method} {url}: {error!r}")
            return None
        took = time.perf_counter() - began
        self.requests += 1
        if self.started:
            self.samples.append((time.monotonic(), took))
        if response.status_code != expected:
            self.errors.append(f"{method} {url}: {response.status_code} {response.text[:200]}")
            return None
        return response


async def operate(load: Load, http: httpx.AsyncClient, rng: random.Random, todos: dict) -> None:  # type: ignore[type-arg]
    """One operation on this client's own todos (url -> its ETag, None until read)."""
    if len(todos) < FEWEST:
        choice = "post"
    elif len(todos) > MOST:
        choice = "delete"
    else:
        choice = rng.choices(["get", "list", "post", "put", "delete"], [35, 15, 15, 20, 15])[0]
    url = rng.choice(list(todos)) if todos else ""
    if choice == "post":
        body = {"name": "soak", "task": uuid.uuid4().hex}
        if response := await load.call(http, "POST", TODOS, 201, json=body):
            todos[response.headers["Location"]] = None
    elif choice == "list":
        await load.call(http, "GET", TODOS, 200)
    elif (choice == "get" or (choice == "put" and todos[url] is None)) and (
        response := await load.call(http, "GET", url, 200)
    ):
        todos[url] = response.headers["ETag"]
    if choice == "put" and todos[url] is not None:
        body = {"name": "soak", "task": uuid.uuid4().hex}
        headers = {"If-Match": todos[url]}
        response = await load.call(http, "PUT", url, 200, json=body, headers=headers)
        todos[url] = response.headers["ETag"] if response else None
    elif choice == "delete":
        headers = {"If-Match": todos[url]} if todos[url] else {}
        await load.call(http, "DELETE", url, 200, headers=headers)
        del todos[url]


async def client(load: Load, base: str, token: str, seed_: int, until: float) -> None:
    """A fixed pace of operations; when late it goes on at once, but never bursts to catch up."""
    interval = CLIENTS / RATE
    rng = random.Random(seed_)
    todos: dict[str, str | None] = {}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as http:
        due = time.monotonic() + rng.random() * interval
        while time.monotonic() < until:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await operate(load, http, rng, todos)
            due = max(due + interval, time.monotonic() - interval)


def percentile(values: list[float], fraction: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=1000, method="inclusive")[int(fraction * 1000) - 1]


async def drive(api: Server, token: str) -> tuple[Load, list[dict[str, float]]]:
    load = Load()
    begin = time.monotonic()
    end = begin + WARMUP + SECONDS
    clients = [
        asyncio.create_task(client(load, api.url, token, number, end)) for number in range(CLIENTS)
    ]
    await asyncio.sleep(WARMUP)
    load.started = time.monotonic()
    rows = [{"second": 0, "rss_mib": api.rss_mib()}]
    print(
        f"  {'until':>7} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8}"
    )
    errors_before = len(load.errors)
    for number in range(1, SLICES + 1):
        slice_end = load.started + SECONDS * number / SLICES
        await asyncio.sleep(max(0.0, slice_end - time.monotonic()))
        latencies = [
            took * 1000
            for at, took in load.samples
            if slice_end - SECONDS / SLICES < at <= slice_end
        ]
        row = {
            "second": round(SECONDS * number / SLICES),
            "requests": len(latencies),
            "errors": len(load.errors) - errors_before,
            "p50_ms": percentile(latencies, 0.5),
            "p99_ms": percentile(latencies, 0.99),
            "rss_mib": api.rss_mib(),
        }
        errors_before = len(load.errors)
        rows.append(row)
        print(
            f"  {row['second']:>6}s {row['requests']:>9} {row['errors']:>7} "
            f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['rss_mib']:>8.1f}",
            flush=True,
        )
    await asyncio.gather(*clients)
    return load, rows


def spawn(command: str, env: dict[str, str], folder: Path) -> subprocess.Popen[bytes]:
    """`todo-worker` or `todo-scheduler`, with its own metrics port and state folder."""
    env = {
        **os.environ,
        **env,
        "TODO_METRICS_PORT": str(_free_port()),
        "TODO_STATE_DIR": str(folder / command),
    }
    args = ["--concurrency", "1"] if command == "todo-worker" else []
    log = (folder / f"{command}.log").open("wb")
    return subprocess.Popen([str(BIN / command), *args], env=env, stdout=log, stderr=log)


def psql(dsn: str, query: str) -> str:
    return subprocess.run(
        ["psql", dsn, "-Atqc", query], check=True, capture_output=True, text=True
    ).stdout.strip()


def flushed_batches(database_url: str) -> int:
    """How many batches of hit counts the worker applied (hits of deleted todos go with them, so
    the batches are what shows the flushes); waits for the first one on a short run."""
    deadline = time.monotonic() + 3 * FLUSH_INTERVAL
    while True:
        batches = int(psql(database_url, "SELECT count(*) FROM hit_batches") or 0)
        if batches or time.monotonic() > deadline:
            return batches
        time.sleep(1)


def main() -> None:
    database = f"todo_soak_{uuid.uuid4().hex[:8]}"
    database_url = POSTGRES.rsplit("/", 1)[0] + f"/{database}"
    prefix = f"todo-soak-{uuid.uuid4().hex[:8]}:"
    folder = Path(tempfile.mkdtemp(prefix="todo-soak-"))
    env = {
        "TODO_DATABASE_URL": database_url.replace("postgresql://", "postgresql+asyncpg://"),
        "TODO_REDIS_URL": REDIS,
        "TODO_REDIS_KEY_PREFIX": prefix,
        "TODO_SECRET_KEY": SECRET,
        "TODO_USE_TOKEN_AUTH": "true",
        "TODO_USE_RATE_LIMITS": "true",
        "TODO_RATE_LIMIT": "100000000/1h",
        "TODO_FLUSH_INTERVAL": str(FLUSH_INTERVAL),
        "TODO_LOG_LEVEL": "warning",
    }
    psql(POSTGRES, f'CREATE DATABASE "{database}"')
    processes: list[subprocess.Popen[bytes]] = []
    api: Server | None = None
    try:
        subprocess.run(
            [str(BIN / "todoctl"), "migrate"],
            check=True,
            env={**os.environ, **env},
            capture_output=True,
        )
        users = asyncio.run(seed(database_url))
        token = issue_token(SECRET, users["poster"], WARMUP + SECONDS + 3600)
        api = start_api(env, folder / "api.log")
        processes = [spawn("todo-worker", env, folder), spawn("todo-scheduler", env, folder)]
        print(
            f"soak: {SECONDS} s at {RATE:g} operations/s from {CLIENTS} clients after a {WARMUP} s "
            f"warm-up; todo-api (2 workers) on PostgreSQL + Redis, worker and scheduler "
            f"flushing hits every {FLUSH_INTERVAL} s",
            flush=True,
        )
        load, rows = asyncio.run(drive(api, token))
        batches = flushed_batches(database_url)
        helpers_alive = all(process.poll() is None for process in processes)
    finally:
        if api is not None:
            api.stop()
        for process in processes:
            process.terminate()
            process.wait(30)
        psql(POSTGRES, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        keys = redis.Redis.from_url(REDIS)
        stale = list(keys.scan_iter(f"{prefix}*"))
        if stale:
            keys.delete(*stale)
        keys.close()
    report(load, rows, batches, helpers_alive, folder)
    shutil.rmtree(folder, ignore_errors=True)  # kept when the soak fails: the logs are there


def report(load: Load, rows: list[dict[str, float]], batches: int, alive: bool, logs: Path) -> None:
    start, end = rows[0]["rss_mib"], rows[-1]["rss_mib"]
    growth = (end - start) / start
    rate = len(load.samples) / SECONDS
    print(
        f"\nrequests: {load.requests} in all, {rate:.0f}/s in the measured run "
        f"(asked: {RATE:g} operations/s); errors: {len(load.errors)}"
    )
    for error in load.errors[:10]:
        print(f"  {error}")
    print(f"API RSS: {start:.1f} MiB after warm-up, {end:.1f} MiB at the end ({growth:+.1%})")
    print(f"hit-count batches the worker flushed to the database: {batches}")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    summary = {"seconds": SECONDS, "rate": RATE, "clients": CLIENTS, "slices": rows}
    out.write_text(
        json.dumps({**summary, "errors": load.errors[:100], "batches": batches}, indent=2)
    )
    print(f"written to {out.relative_to(HERE.parent)}")
    failures = []
    if load.errors:
        failures.append(f"{len(load.errors)} errors")
    if growth >= MAX_RSS_GROWTH:
        failures.append(f"RSS grew {growth:.1%} (limit {MAX_RSS_GROWTH:.0%})")
    if not alive or not batches:
        failures.append(f"the worker or scheduler stopped, or flushed nothing (logs in {logs})")
    if failures:
        raise SystemExit("soak: FAILED: " + "; ".join(failures))
    print("soak: passed")


if __name__ == "__main__":
    main()
