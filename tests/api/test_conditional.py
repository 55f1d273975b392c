"""ETags and conditional requests: caching (304) and lost-update prevention (412)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.test_todos import TODOS, create
from tests.support import local_http
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
        async with local_http.async_client(auth=user, timeout=30) as http:
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


# If-Match compares the whole tag (RFC 9110 13.1.1), not just its version part.


def _retag(etag: str, digest: str) -> str:
    """`etag` with its digest part replaced: the same version, a tag we never minted."""
    version = etag.strip('"').partition("-")[0]
    return f'"{version}-{digest}"'


def test_if_match_with_the_right_version_and_a_made_up_digest_is_412(
    client: httpx.Client,
) -> None:
    location = create(client)
    client.put(location, json={"name": "second", "task": "version"})
    etag = client.get(location).headers["ETag"]
    assert etag.startswith('"2-')

    put = client.put(location, json={"name": "x", "task": "y"}, headers={"If-Match": '"2-bogus"'})
    forged = _retag(etag, "0" * 16)
    delete = client.delete(location, headers={"If-Match": forged})

    assert (put.status_code, delete.status_code) == (412, 412)
    after = client.get(location)
    assert after.json()["name"] == "second"
    assert after.headers["ETag"] == etag


def test_if_match_with_another_todos_tag_of_the_same_version_is_412(
    client: httpx.Client,
) -> None:
    mine, other = create(client, name="mine"), create(client, name="other")
    other_tag = client.get(other).headers["ETag"]
    assert other_tag.partition("-")[0] == client.get(mine).headers["ETag"].partition("-")[0]

    put = client.put(mine, json={"name": "x", "task": "y"}, headers={"If-Match": other_tag})
    delete = client.delete(mine, headers={"If-Match": other_tag})

    assert (put.status_code, delete.status_code) == (412, 412)
    assert client.get(mine).json()["name"] == "mine"


def test_if_match_with_the_right_tag_among_others_succeeds(client: httpx.Client) -> None:
    location = create(client)
    etag = client.get(location).headers["ETag"]

    response = client.put(
        location,
        json={"name": "a", "task": "b"},
        headers={"If-Match": f"{_retag(etag, 'bogus')}, {etag}"},
    )

    assert response.status_code == 200
    assert client.get(location).json()["name"] == "a"
    fresh = client.get(location).headers["ETag"]
    assert client.delete(location, headers={"If-Match": fresh}).status_code == 200
    assert client.get(location).status_code == 404


def test_the_tag_changes_with_every_write_even_back_to_the_same_content(
    client: httpx.Client,
) -> None:
    location = create(client)
    first = client.get(location).headers["ETag"]
    client.put(location, json={"name": "other", "task": "text"})
    second = client.get(location).headers["ETag"]
    client.put(location, json={"name": "buy", "task": "buy groceries"})
    third = client.get(location).headers["ETag"]

    assert len({first, second, third}) == 3


@pytest.mark.parametrize("method", ["put", "delete"])
def test_thirty_two_threads_writing_with_one_tag_exactly_one_wins(
    api: ApiServer, method: str
) -> None:
    user = api.add_user()
    with api.client(auth=user) as client:
        location = create(client)
        etag = client.get(location).headers["ETag"]
    writers = 32
    start = threading.Barrier(writers)

    def write(i: int) -> int:
        with api.client(auth=user) as http:
            http.get("/healthz")  # connect before the barrier: the writes then leave together
            start.wait()
            if method == "put":
                response = http.put(
                    location,
                    json={"name": f"writer {i}", "task": "race"},
                    headers={"If-Match": etag},
                )
            else:
                response = http.delete(location, headers={"If-Match": etag})
            return response.status_code

    with ThreadPoolExecutor(writers) as pool:
        statuses = list(pool.map(write, range(writers)))

    # A losing DELETE may find the todo gone already (404) or changed (412): never a second 200.
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 412, 404}
    with api.client(auth=user) as client:
        after = client.get(location)
    if method == "put":
        assert after.json()["name"].startswith("writer ")
        assert after.headers["ETag"] != etag
    else:
        assert after.status_code == 404


# The seed's clients send `If-None-Match: "tag", *`: a list holding `*` means `*`.


def test_if_none_match_list_holding_star_is_304_without_body_or_html(
    client: httpx.Client,
) -> None:
    location = create(client)

    for url in (location, TODOS):
        response = client.get(url, headers={"If-None-Match": '"not-the-tag", *'})
        assert response.status_code == 304, url
        assert response.content == b""
        assert "html" not in response.headers.get("Content-Type", "")
        assert response.headers["ETag"] == client.get(url).headers["ETag"]


def test_a_304_has_no_html_content_type(client: httpx.Client) -> None:
    location = create(client)
    etag = client.get(location).headers["ETag"]

    for headers in ({"If-None-Match": etag}, {"If-None-Match": "*"}):
        response = client.get(location, headers=headers)
        assert response.status_code == 304
        assert response.content == b""
        assert "Content-Type" not in response.headers


def test_put_if_none_match_list_holding_star_is_412(client: httpx.Client) -> None:
    location = create(client)

    response = client.put(
        location, json={"name": "a", "task": "b"}, headers={"If-None-Match": '"nope", *'}
    )

    assert response.status_code == 412
    assert client.get(location).json()["name"] == "buy"
