"""Steady client load against a live API: every request's outcome kept for the test to check."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import httpx

from tests.support import local_http
from tests.support.servers import ApiServer

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
        self, server: ApiServer, clients: int = 4, pause: float = 0.02, timeout: float = 30
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
        with local_http.client(base_url=self.server.url, auth=user, timeout=self.timeout) as http:
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
