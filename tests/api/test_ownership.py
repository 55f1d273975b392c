"""Todos belong to their creator: to anyone else they do not exist."""

from __future__ import annotations

from tests.api.test_todos import TODOS, create
from tests.support.servers import ApiServer


def test_another_user_gets_404_and_changes_nothing(api: ApiServer) -> None:
    with api.client(auth=api.add_user()) as alice, api.client(auth=api.add_user()) as bob:
        location = create(alice)
        etag = alice.get(location).headers["ETag"]

        assert bob.get(location).status_code == 404
        assert bob.put(location, json={"name": "mine", "task": "now"}).status_code == 404
        assert (
            bob.put(
                location, json={"name": "mine", "task": "now"}, headers={"If-Match": etag}
            ).status_code
            == 404
        )
        assert bob.delete(location).status_code == 404
        assert bob.get(TODOS).json()["urls"] == []
        assert bob.get(TODOS).json()["meta"]["total"] == 0

        mine = alice.get(location)
        assert mine.status_code == 200
        assert mine.json()["name"] == "buy"
        assert mine.headers["ETag"] == etag
