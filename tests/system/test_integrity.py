"""Data integrity under concurrency on PostgreSQL: many clients of several users create, update
(with and without If-Match) and delete at once, contend for shared todos with the same ETag, and
finally all PUT one shared todo without If-Match (every write succeeds; the last one stays).

Afterwards the database itself (queried directly) holds exactly what the clients were told: each
todo equals the last write its client saw succeed (each client owns its todos, so "last" is
defined), exactly one writer per contended ETag won, the totals the API reports match the rows, and
no value sent in a request that got an error is anywhere.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.databases import ServerPool
from tests.support.servers import ApiServer, fetch

USERS = 3
CLIENTS_PER_USER = 4
OWN_TODOS = 3  # per client
ROUNDS = 4  # contended rounds, each after OPS_PER_ROUND operations on the client's own todos
OPS_PER_ROUND = 8
SHARED_TODOS = 2  # per user; at the end the first is raced for with DELETE, the second blind PUTs
TODOS = "/api/v1.0/todos/"


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


@dataclass
class Contest:
    """One contended write: every client of a user holding the same ETag of one shared todo."""

    tags: set[str] = field(default_factory=set)
    outcomes: list[tuple[int, tuple[str, str]]] = field(default_factory=list)  # (status, values)
    blind: bool = False  # PUTs without If-Match: every one succeeds, one after the other


@dataclass
class Client:
    """One client thread, owning some todos; it records what it was told."""

    api: ApiServer
    auth: tuple[str, str]
    shared: list[str]
    barrier: threading.Barrier
    contests: dict[tuple[str, int], Contest]
    lock: threading.Lock
    rng: random.Random
    own: dict[str, tuple[str, str] | None] = field(default_factory=dict)  # None: deleted
    puts: Counter[str] = field(default_factory=Counter)  # successful PUTs per own todo
    forbidden: set[str] = field(default_factory=set)  # values of requests that got an error
    http: httpx.Client = field(init=False)

    def run(self) -> None:
        with self.api.client(auth=self.auth) as self.http:
            for _ in range(OWN_TODOS):
                self.create()
            for round_ in range(ROUNDS):
                for _ in range(OPS_PER_ROUND):
                    self.rng.choice(self.operations())()
                for url in self.shared:
                    self.contend(url, round_, "PUT")
            self.contend(self.shared[0], ROUNDS, "DELETE")
            self.contend(self.shared[1], ROUNDS + 1, "BLIND")

    def operations(self) -> list[Callable[[], None]]:
        """What a client does with its own todos, weighted: mostly updates."""
        updates = [self.put, self.put_if_match] * 2
        return [*updates, self.stale, self.delete, self.invalid, self.missing]

    def live(self) -> str:
        return self.rng.choice([url for url, values in self.own.items() if values is not None])

    def create(self) -> None:
        values = (unique("new"), "created")
        response = self.http.post(TODOS, json={"name": values[0], "task": values[1]})
        assert response.status_code == 201, response.text
        self.own[response.headers["Location"]] = values

    def put(self, url: str | None = None, headers: dict[str, str] | None = None) -> None:
        url = url or self.live()
        values = (unique("put"), "blind" if headers is None else "if-match")
        body = {"name": values[0], "task": values[1]}
        response = self.http.put(url, json=body, headers=headers)
        assert response.status_code == 200, response.text
        self.own[url] = values
        self.puts[url] += 1

    def current_tag(self, url: str) -> str:
        response = self.http.get(url)
        assert response.status_code == 200, response.text
        assert (response.json()["name"], response.json()["task"]) == self.own[url]
        return response.headers["ETag"]

    def put_if_match(self) -> None:
        url = self.live()
        self.put(url, {"If-Match": self.current_tag(url)})

    def stale(self) -> None:
        """A write with an ETag from before this client's own last write: 412, no change."""
        url = self.live()
        old = self.current_tag(url)
        self.put(url)
        values = (unique("stale"), "must never appear")
        self.forbidden.add(values[0])
        body = {"name": values[0], "task": values[1]}
        assert self.http.put(url, json=body, headers={"If-Match": old}).status_code == 412
        assert self.http.delete(url, headers={"If-Match": old}).status_code == 412

    def delete(self) -> None:
        url = self.live()
        headers = {"If-Match": self.current_tag(url)} if self.rng.random() < 0.5 else None
        assert self.http.delete(url, headers=headers).status_code == 200
        self.own[url] = None
        assert self.http.get(url).status_code == 404
        self.create()

    def missing(self) -> None:
        gone = [url for url, values in self.own.items() if values is None]
        if not gone:
            return
        marker = unique("gone")
        self.forbidden.add(marker)
        url = self.rng.choice(gone)
        assert self.http.put(url, json={"name": marker, "task": "t"}).status_code == 404
        assert self.http.delete(url).status_code == 404

    def invalid(self) -> None:
        """A body the API must refuse whole: nothing of it may be stored."""
        marker = unique("bad")
        self.forbidden.add(marker)
        own = self.live()
        method, url, content, status = self.rng.choice(
            [
                ("POST", TODOS, {"name": marker + "x" * 64, "task": "t"}, 400),
                ("POST", TODOS, {"name": marker}, 400),
                ("POST", TODOS, f'{{"name": "{marker}", "task": '.encode(), 400),
                ("POST", TODOS, {"name": marker, "task": "t" * 70_000}, 413),
                ("PUT", own, {"name": marker, "task": ""}, 400),
                ("PUT", own, f'{{"name": "{marker}", "task": "t"'.encode(), 400),
            ]
        )
        if isinstance(content, bytes):
            headers = {"Content-Type": "application/json"}
            response = self.http.request(method, url, content=content, headers=headers)
        else:
            response = self.http.request(method, url, json=content)
        assert response.status_code == status, response.text

    def contend(self, url: str, round_: int, method: str) -> None:
        self.barrier.wait()
        response = self.http.get(url)
        assert response.status_code == 200, response.text
        tag = response.headers["ETag"]
        self.barrier.wait()  # every client holds the same tag now: nobody has written yet
        values = (unique("shared"), f"round {round_}")
        blind = method == "BLIND"
        body = {"name": values[0], "task": values[1]} if method != "DELETE" else None
        headers = {} if blind else {"If-Match": tag}
        status = self.http.request(
            "PUT" if blind else method, url, json=body, headers=headers
        ).status_code
        with self.lock:
            contest = self.contests[(url, round_)]
            contest.tags.add(tag)
            contest.outcomes.append((status, values))
            contest.blind = blind


Users = dict[int, tuple[list[Client], list[str]]]  # user id -> (clients, shared todo URLs)
Contests = dict[tuple[str, int], Contest]  # (shared todo URL, round) -> what each client got


def run_clients(api: ApiServer) -> tuple[Users, Contests]:
    """Every user's clients, all at once."""
    users: Users = {}
    contests: Contests = defaultdict(Contest)
    lock = threading.Lock()
    for number in range(USERS):
        auth = api.add_user()
        (user,) = fetch(api.database_url, "SELECT id FROM users WHERE username = $1", auth[0])
        with api.client(auth=auth) as http:
            shared = []
            for _ in range(SHARED_TODOS):
                response = http.post(TODOS, json={"name": "shared", "task": "contended"})
                assert response.status_code == 201
                shared.append(response.headers["Location"])
        barrier = threading.Barrier(CLIENTS_PER_USER, timeout=60)
        users[int(user["id"])] = (
            [
                Client(api, auth, shared, barrier, contests, lock, random.Random(number * 100 + n))
                for n in range(CLIENTS_PER_USER)
            ],
            shared,
        )

    errors: list[BaseException] = []

    def guarded(client: Client) -> None:
        try:
            client.run()
        except BaseException as error:
            errors.append(error)
            client.barrier.abort()  # its fellow clients stop waiting for it

    threads = [
        threading.Thread(target=guarded, args=(client,))
        for clients, _ in users.values()
        for client in clients
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    return users, contests


Expected = dict[str, tuple[str, str, int] | None]  # shared todo URL -> (name, task, version)
Blind = dict[str, tuple[set[tuple[str, str]], int]]  # URL -> (the values sent, final version)


def judge(contests: Contests) -> tuple[Expected, Blind, set[str]]:
    """Each contended ETag had exactly one winner, the others got 412 (404 for a DELETE that
    lost); every blind PUT succeeded, each bumping the version. Returns each shared todo's
    expected (name, task, version) or None, the blind contests, and the losers' values."""
    expected: Expected = {}
    blind: Blind = {}
    lost: set[str] = set()
    for (url, round_), contest in sorted(contests.items(), key=lambda item: item[0][1]):
        assert len(contest.tags) == 1 and len(contest.outcomes) == CLIENTS_PER_USER
        if contest.blind:
            assert {status for status, _ in contest.outcomes} == {200}, contest.outcomes
            before = expected.pop(url)
            assert before is not None
            blind[url] = ({values for _, values in contest.outcomes}, before[2] + CLIENTS_PER_USER)
            continue
        winners = [values for status, values in contest.outcomes if status == 200]
        losers = {status for status, _ in contest.outcomes if status != 200}
        assert len(winners) == 1, contest.outcomes
        assert losers <= ({412} if round_ < ROUNDS else {404, 412}), contest.outcomes
        lost |= {values[0] for status, values in contest.outcomes if status != 200}
        # Created at version 1; round r's winner makes it r + 2; the DELETE round removes it.
        expected[url] = (*winners[0], round_ + 2) if round_ < ROUNDS else None
    return expected, blind, lost


@pytest.mark.timeout(120)
def test_concurrent_writers_leave_exactly_what_they_were_told(
    postgres: str, servers: ServerPool
) -> None:
    api = servers.get("postgres")
    users, contests = run_clients(api)
    shared_rows, blind, forbidden = judge(contests)

    for user, (clients, shared) in users.items():
        expected: dict[int, tuple[str, str, int]] = {}
        for client in clients:
            forbidden |= client.forbidden
            for url, values in client.own.items():
                if values is not None:
                    expected[todo_id(url)] = (*values, 1 + client.puts[url])
        query = "SELECT id, name, task, version FROM todos WHERE owner_id = $1"
        rows = fetch(api.database_url, query, user)
        stored_rows = {row["id"]: (row["name"], row["task"], row["version"]) for row in rows}
        for url in shared:
            if url in blind:  # the last blind PUT's values, after all of them were applied
                sent, version = blind[url]
                name, task, stored_version = stored_rows[todo_id(url)]
                assert (name, task) in sent and stored_version == version
                expected[todo_id(url)] = (name, task, version)
            elif (row := shared_rows[url]) is not None:
                expected[todo_id(url)] = row

        assert {row["id"]: (row["name"], row["task"], row["version"]) for row in rows} == expected
        stored = [row["name"] + " " + row["task"] for row in rows]
        assert not [value for value in forbidden if any(value in text for text in stored)]

        counted = "SELECT todos FROM todo_counts WHERE owner_id = $1"
        (count,) = fetch(api.database_url, counted, user)
        with api.client(auth=clients[0].auth) as http:
            page = http.get(TODOS, params={"per_page": 100}).json()
            stats = http.get("/api/v1.0/stats").json()
            for todo, (name, task, _) in expected.items():
                body = http.get(f"{TODOS}{todo}").json()
                assert (body["name"], body["task"]) == (name, task)
        assert page["meta"]["total"] == stats["todos"] == count["todos"] == len(expected)
        assert {todo_id(url) for url in page["urls"]} == set(expected)


def todo_id(url: str) -> int:
    return int(url.rstrip("/").rsplit("/", 1)[1])
