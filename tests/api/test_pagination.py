"""The seed's pagination: `meta` with absolute links, per_page capped, plus an RFC 8288 `Link`."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_todos import TODOS, create
from tests.support import ApiServer


@pytest.fixture
def client_with_25(api: ApiServer) -> httpx.Client:
    client = api.client(auth=api.add_user())
    for i in range(25):
        create(client, name=f"todo {i}")
    return client


def test_first_page_defaults_to_ten(client_with_25: httpx.Client) -> None:
    body = client_with_25.get(TODOS).json()

    meta = body["meta"]
    assert len(body["urls"]) == 10
    assert (meta["page"], meta["pages"], meta["per_page"], meta["total"]) == (1, 3, 10, 25)
    assert meta["prev"] is None
    assert meta["next"].endswith("/api/v1.0/todos/?page=2&per_page=10")
    assert meta["next"].startswith("http://127.0.0.1:")
    assert meta["first"].endswith("page=1&per_page=10")
    assert meta["last"].endswith("page=3&per_page=10")


def test_following_next_links_visits_every_todo_once(client_with_25: httpx.Client) -> None:
    seen: list[str] = []
    url: str | None = f"{TODOS}?per_page=7"
    while url:
        body = client_with_25.get(url).json()
        seen.extend(body["urls"])
        url = body["meta"]["next"]

    assert len(seen) == 25
    assert len(set(seen)) == 25


def test_last_page_has_the_rest_and_a_prev_link(client_with_25: httpx.Client) -> None:
    body = client_with_25.get(TODOS, params={"page": 3}).json()

    assert len(body["urls"]) == 5
    assert body["meta"]["next"] is None
    assert body["meta"]["prev"].endswith("page=2&per_page=10")


def test_link_header_matches_meta(client_with_25: httpx.Client) -> None:
    response = client_with_25.get(TODOS, params={"page": 2})

    links = response.links
    meta = response.json()["meta"]
    for rel in ("next", "prev", "first", "last"):
        assert links[rel]["url"] == meta[rel]


def test_per_page_is_capped(client_with_25: httpx.Client) -> None:
    meta = client_with_25.get(TODOS, params={"per_page": 10_000}).json()["meta"]

    assert meta["per_page"] == 100
    assert meta["pages"] == 1


def test_page_past_the_end_is_empty(client_with_25: httpx.Client) -> None:
    body = client_with_25.get(TODOS, params={"page": 9}).json()

    assert body["urls"] == []
    assert body["meta"]["total"] == 25


@pytest.mark.parametrize(
    "query",
    [
        {"page": "0"},
        {"page": "-1"},
        {"page": "two"},
        {"page": "\u00b2"},  # a digit to str.isdigit, not to int()
        {"per_page": "0"},
        {"per_page": "1.5"},
    ],
)
def test_bad_paging_values_are_400(client: httpx.Client, query: dict[str, str]) -> None:
    response = client.get(TODOS, params=query)

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == 400
    assert next(iter(query)) in body["message"]


def test_empty_collection(client: httpx.Client) -> None:
    meta = client.get(TODOS).json()["meta"]

    assert (meta["total"], meta["pages"], meta["next"], meta["prev"]) == (0, 0, None, None)
