"""A stack for worker and scheduler tests: a real `todo-api` on PostgreSQL with hit counting on
(Redis), and the settings a `todo-worker` / `todo-scheduler` needs to join it. Every stack has its
own database and Redis key prefix (the broker's keys included), so stacks never see each other."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from tests.support.servers import (
    ApiServer,
    ServiceProcess,
    delete_keys,
    fetch,
    new_key_prefix,
    start_api,
    start_service,
    start_worker,
    wait_until,
)
from todo_api.hits import SEND_EVERY_SECONDS
from todo_common.celery_app import FLUSH_HIT_COUNTS, QUEUE, create_celery
from todo_common.settings import Settings


@dataclass
class Stack:
    api: ApiServer
    env: dict[str, str]
    folder: Path
    services: list[ServiceProcess] = field(default_factory=list)

    def settings(self) -> Settings:
        return Settings(
            **{name.removeprefix("TODO_").lower(): value for name, value in self.env.items()}
        )

    def restart_api(self, **env: str) -> None:
        """Replace the API with one on the same database and key prefix, plus `env`."""
        self.api.stop()
        self.api = start_api({**self.env, **env}, self.folder)

    def worker(self, *args: str, **env: str) -> ServiceProcess:
        worker = start_worker({**self.env, **env}, self.folder, *args)
        self.services.append(worker)
        return worker

    def scheduler(self, **env: str) -> ServiceProcess:
        scheduler = start_service("todo-scheduler", {**self.env, **env}, self.folder)
        self.services.append(scheduler)
        return scheduler

    def send(self, task: str = FLUSH_HIT_COUNTS, **options: object) -> None:
        """Send `task`, once the API has sent the views it buffers (every 0.1 s) to Redis."""
        time.sleep(3 * SEND_EVERY_SECONDS)
        app = create_celery(self.settings())
        try:
            app.send_task(task, **options)
        finally:
            app.close()

    def flush(self, worker: ServiceProcess) -> None:
        """Send a flush and wait until `worker` has finished it."""
        done = worker.metric("celery_task_succeeded_total", name=FLUSH_HIT_COUNTS)
        self.send()
        finished = wait_until(
            lambda: worker.metric("celery_task_succeeded_total", name=FLUSH_HIT_COUNTS) > done, 20
        )
        assert finished, f"the flush did not finish:\n{worker.log()}"

    def user_client(self) -> httpx.Client:
        return self.api.client(auth=self.api.add_user())

    def hits_in_database(self) -> int:
        """Every hit flushed so far, read from the database itself (not through the API)."""
        rows = fetch(self.env["TODO_DATABASE_URL"], "SELECT coalesce(sum(hits), 0) FROM todo_hits")
        return int(rows[0][0])

    def broker_messages(self) -> tuple[int, int]:
        """(messages waiting in the task queue, messages delivered but not yet acked)."""
        prefix = self.env["TODO_REDIS_KEY_PREFIX"]
        client = redis.Redis.from_url(self.env["TODO_REDIS_URL"])
        try:
            # kombu keeps one list per priority step: "todo", then "todo\x06\x163", ...
            queued = sum(
                int(client.llen(key))
                for key in client.scan_iter(f"{prefix}{QUEUE}*")
                if client.type(key) == b"list"
            )
            return queued, int(client.hlen(f"{prefix}unacked"))
        finally:
            client.close()


@contextlib.contextmanager
def running_stack(database_url: str, redis_url: str, folder: Path, **env: str) -> Iterator[Stack]:
    """A Stack on `database_url` with a Redis key prefix of its own (plus `env`); afterwards its
    services are killed, the API stopped and the prefix's keys deleted."""
    prefix = new_key_prefix()
    settings = {
        "TODO_DATABASE_URL": database_url,
        "TODO_REDIS_URL": redis_url,
        "TODO_REDIS_KEY_PREFIX": prefix,
        "TODO_STATE_DIR": str(folder / "state"),
        **env,
    }
    stack = Stack(start_api(settings, folder), settings, folder)
    try:
        yield stack
    finally:
        for service in stack.services:
            service.kill()
        stack.api.stop()
        delete_keys(redis_url, prefix)


def new_todo(client: httpx.Client) -> str:
    response = client.post("/api/v1.0/todos/", json={"name": "read", "task": "a book"})
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def view(client: httpx.Client, url: str, times: int) -> None:
    for _ in range(times):
        assert client.get(url).status_code == 200


def stats(client: httpx.Client) -> dict[str, object]:
    response = client.get("/api/v1.0/stats")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body
