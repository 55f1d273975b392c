"""Bad input: the documented status, a JSON body with `status`, and nothing written."""

from __future__ import annotations

import httpx
import pytest

from tests.api.test_todos import TODOS, create
from tests.support.servers import ApiServer

PROBLEM_KEYS = {"status", "error", "message", "type", "title", "detail"}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == PROBLEM_KEYS
    assert body["status"] == status
    assert body["title"].lower() == body["error"]
    assert body["detail"] == body["message"]


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b'{"name": "x", "task": ', "application/json", 400),
        (b"\xff\xfe not utf-8", "application/json", 400),
        (b'["name", "task"]', "application/json", 400),
        (b'{"name": 1, "task": "t"}', "application/json", 400),
        (b'{"name": "n", "task": null}', "application/json", 400),
        (b'{"name": "", "task": "t"}', "application/json", 400),
        (b'{"task": "t"}', "application/json", 400),
        (b'{"name": "nul\\u0000", "task": "t"}', "application/json", 400),
        (b'{"name": "' + b"n" * 65 + b'", "task": "t"}', "application/json", 400),
        (b'{"name": "n", "task": "' + b"t" * 251 + b'"}', "application/json", 400),
        (b"name=n&task=t", "application/x-www-form-urlencoded", 415),
        (b'{"name": "n", "task": "' + b"t" * 70_000 + b'"}', "application/json", 413),
    ],
)
def test_bad_bodies_are_rejected_and_write_nothing(
    client: httpx.Client, content: bytes, content_type: str, status: int
) -> None:
    created = client.post(TODOS, content=content, headers={"Content-Type": content_type})
    assert_problem(created, status)

    location = create(client)
    updated = client.put(location, content=content, headers={"Content-Type": content_type})
    assert_problem(updated, status)

    assert client.get(TODOS).json()["meta"]["total"] == 1
    assert client.get(location).json()["name"] == "buy"


def test_a_body_too_large_is_answered_413_with_connection_close(api: ApiServer) -> None:
    """The server stops reading a body over the limit and closes the connection after its
    413: the answer says so, so a client's next request goes on a new connection instead of
    being lost on this one (seen as "Server disconnected without sending a response")."""
    too_large = b'{"name": "n", "task": "' + b"t" * 70_000 + b'"}'
    with api.client(auth=api.add_user()) as http:
        refused = http.post(TODOS, content=too_large, headers={"Content-Type": "application/json"})
        assert_problem(refused, 413)
        assert refused.headers["Connection"] == "close"
        for _ in range(3):
            assert http.get(TODOS).status_code == 200


def test_limits_are_inclusive(client: httpx.Client) -> None:
    location = create(client, name="n" * 64, task="t" * 250)
    assert client.get(location).json()["name"] == "n" * 64


def test_unknown_route_is_json_404(client: httpx.Client) -> None:
    assert_problem(client.get("/api/v1.0/nothing-here"), 404)


def test_wrong_method_is_json_405_with_allow(client: httpx.Client) -> None:
    response = client.patch(f"{TODOS}1", json={})
    assert_problem(response, 405)
    assert "PUT" in response.headers["Allow"]


def test_collection_answers_without_its_trailing_slash(client: httpx.Client) -> None:
    created = client.post("/api/v1.0/todos", json={"name": "n", "task": "t"})
    listed = client.get("/api/v1.0/todos")

    assert created.status_code == 201
    assert listed.status_code == 200
    assert listed.json()["urls"] == [created.headers["Location"]]


def test_nul_in_credentials_is_401_not_a_server_error(api: ApiServer) -> None:
    with api.client(auth=("a\x00b", "pw")) as http:
        assert http.get(TODOS).status_code == 401


def test_deleted_ids_are_never_reused(client: httpx.Client) -> None:
    first = create(client)
    client.delete(first)

    assert create(client) != first
