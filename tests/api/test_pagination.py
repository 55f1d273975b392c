"""The seed's pagination: `meta` with absolute links, per_page capped, plus an RFC 8288 `Link`."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_todos import TODOS, create
from tests.support.servers import ApiServer


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
    tenth = body["urls"][-1].rsplit("/", 1)[1]
    assert meta["next"].endswith(f"/api/v1.0/todos/?page=2&per_page=10&after={tenth}")
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
    first_here = body["urls"][0].rsplit("/", 1)[1]
    assert body["meta"]["prev"].endswith(f"page=2&per_page=10&before={first_here}")


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
        {"after": "x"},
        {"before": "0"},
        {"after": "99999999999999999999"},
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


def test_prev_links_walk_back_over_the_same_todos(client_with_25: httpx.Client) -> None:
    forward: list[list[str]] = []
    url: str | None = f"{TODOS}?per_page=10"
    while url:
        body = client_with_25.get(url).json()
        forward.append(body["urls"])
        last_meta = body["meta"]
        url = last_meta["next"]
    backward: list[list[str]] = []
    url = last_meta["prev"]
    while url:
        body = client_with_25.get(url).json()
        backward.append(body["urls"])
        url = body["meta"]["prev"]
    assert backward == forward[:-1][::-1]


def test_bare_page_numbers_near_the_end_are_exact(client_with_25: httpx.Client) -> None:
    everything = client_with_25.get(TODOS, params={"per_page": 100}).json()["urls"]
    for page in (1, 2, 3):
        urls = client_with_25.get(TODOS, params={"page": page, "per_page": 10}).json()["urls"]
        assert urls == everything[(page - 1) * 10 : page * 10]
    assert (
        client_with_25.get(TODOS, params={"page": 4, "per_page": 7}).json()["urls"]
        == (everything[21:25])
    )


def test_the_total_stays_exact_through_deletes(client_with_25: httpx.Client) -> None:
    urls = client_with_25.get(TODOS, params={"per_page": 3}).json()["urls"]
    for url in urls:
        assert client_with_25.delete(url).status_code == 200
    assert client_with_25.delete(urls[0]).status_code == 404  # not counted twice
    meta = client_with_25.get(TODOS).json()["meta"]
    assert (meta["total"], meta["pages"]) == (22, 3)


def test_after_and_before_together_bound_a_range(client_with_25: httpx.Client) -> None:
    urls = client_with_25.get(TODOS, params={"per_page": 25}).json()["urls"]
    ids = [int(url.rsplit("/", 1)[1]) for url in urls]
    params = {"after": ids[2], "before": ids[20], "per_page": 25}
    response = client_with_25.get(TODOS, params=params)
    assert response.status_code == 200
    assert response.json()["urls"] == urls[3:20]
