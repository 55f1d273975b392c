"""ETags and conditional requests: caching (304) and lost-update prevention (412)."""

from __future__ import annotations

import asyncio

import httpx

from tests.api.test_todos import TODOS, create
from tests.support.servers import ApiServer


def test_get_has_a_strong_etag(client: httpx.Client) -> None:
    response = client.get(create(client))

    etag = response.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert not etag.startswith("W/")


def test_if_none_match_gives_304_until_the_todo_changes(client: httpx.Client) -> None:
    location = create(client)
    etag = client.get(location).headers["ETag"]

    not_modified = client.get(location, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["ETag"] == etag

    client.put(location, json={"name": "new", "task": "changed"})
    changed = client.get(location, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


def test_if_none_match_list_and_star(client: httpx.Client) -> None:
    location = create(client)
    etag = client.get(location).headers["ETag"]

    listed = client.get(location, headers={"If-None-Match": f'"nope", {etag}'})
    star = client.get(location, headers={"If-None-Match": "*"})

    assert (listed.status_code, star.status_code) == (304, 304)


def test_collection_etag(client: httpx.Client) -> None:
    create(client)
    etag = client.get(TODOS).headers["ETag"]

    assert client.get(TODOS, headers={"If-None-Match": etag}).status_code == 304
    create(client, name="another")
    assert client.get(TODOS, headers={"If-None-Match": etag}).status_code == 200


def test_get_with_stale_if_match_is_412(client: httpx.Client) -> None:
    location = create(client)

    response = client.get(location, headers={"If-Match": '"0-deadbeef"'})

    assert response.status_code == 412
    assert response.json()["status"] == 412


def test_put_with_current_etag_succeeds_and_returns_the_new_one(client: httpx.Client) -> None:
    location = create(client)
    etag = client.get(location).headers["ETag"]

    response = client.put(location, json={"name": "a", "task": "b"}, headers={"If-Match": etag})

    assert response.status_code == 200
    assert response.headers["ETag"] == client.get(location).headers["ETag"] != etag


def test_put_with_stale_etag_is_412_and_changes_nothing(client: httpx.Client) -> None:
    location = create(client)
    stale = client.get(location).headers["ETag"]
    client.put(location, json={"name": "first", "task": "writer"})

    response = client.put(
        location, json={"name": "second", "task": "writer"}, headers={"If-Match": stale}
    )

    assert response.status_code == 412
    assert client.get(location).json()["name"] == "first"


def test_delete_with_stale_etag_is_412_and_keeps_the_todo(client: httpx.Client) -> None:
    location = create(client)
    stale = client.get(location).headers["ETag"]
    client.put(location, json={"name": "edited", "task": "meanwhile"})

    assert client.delete(location, headers={"If-Match": stale}).status_code == 412
    assert client.get(location).status_code == 200
    fresh = client.get(location).headers["ETag"]
    assert client.delete(location, headers={"If-Match": fresh}).status_code == 200


def test_weak_or_foreign_tags_never_match_if_match(client: httpx.Client) -> None:
    location = create(client)
    etag = client.get(location).headers["ETag"]

    weak = client.put(location, json={"name": "a", "task": "b"}, headers={"If-Match": f"W/{etag}"})
    foreign = client.put(location, json={"name": "a", "task": "b"}, headers={"If-Match": '"xyz"'})

    assert (weak.status_code, foreign.status_code) == (412, 412)


def test_put_if_none_match_star_on_existing_todo_is_412(client: httpx.Client) -> None:
    location = create(client)

    response = client.put(location, json={"name": "a", "task": "b"}, headers={"If-None-Match": "*"})

    assert response.status_code == 412
    assert client.get(location).json()["name"] == "buy"


def test_sixteen_concurrent_puts_with_one_tag_exactly_one_wins(api: ApiServer) -> None:
    user = api.add_user()
    with api.client(auth=user) as client:
        location = create(client)
        etag = client.get(location).headers["ETag"]

    async def race() -> list[int]:
        async with httpx.AsyncClient(auth=user, timeout=30) as http:
            responses = await asyncio.gather(
                *(
                    http.put(
                        location,
                        json={"name": f"writer {i}", "task": "race"},
                        headers={"If-Match": etag},
                    )
                    for i in range(16)
                )
            )
        return [response.status_code for response in responses]

    statuses = asyncio.run(race())

    assert sorted(statuses) == [200] + [412] * 15
    with api.client(auth=user) as client:
        winner = client.get(location)
    assert winner.json()["name"].startswith("writer ")
    assert winner.headers["ETag"] != etag


def test_if_none_match_is_checked_even_when_if_match_passes(client: httpx.Client) -> None:
    location = create(client)
    etag = client.get(location).headers["ETag"]

    response = client.put(
        location, json={"name": "a", "task": "b"}, headers={"If-Match": etag, "If-None-Match": etag}
    )

    assert response.status_code == 412
    assert client.get(location).json()["name"] == "buy"
