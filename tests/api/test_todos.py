"""The seed's todo resource: create, read, list, update, delete, as a client sees them."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import httpx

TODOS = "/api/v1.0/todos/"


def create(client: httpx.Client, name: str = "buy", task: str = "buy groceries") -> str:
    response = client.post(TODOS, json={"name": name, "task": task})
    assert response.status_code == 201, response.text
    assert response.json() == {}
    return response.headers["Location"]


def test_create_then_get(client: httpx.Client) -> None:
    location = create(client)
    assert location.startswith(f"{client.base_url}".rstrip("/") + "/api/v1.0/todos/")

    response = client.get(location)

    assert response.status_code == 200
    body = response.json()
    assert body["url"] == location
    assert (body["name"], body["task"]) == ("buy", "buy groceries")
    assert parsedate_to_datetime(body["timestamp"]).tzname() == "UTC"
    assert body["timestamp"].endswith(" GMT")
    assert set(body) == {"url", "name", "task", "timestamp"}


def test_list_shows_own_todos_in_creation_order(client: httpx.Client) -> None:
    locations = [create(client, name=f"t{i}") for i in range(3)]

    body = client.get(TODOS).json()

    assert body["urls"] == locations
    assert body["meta"]["total"] == 3


def test_update_changes_the_todo(client: httpx.Client) -> None:
    location = create(client)

    response = client.put(location, json={"name": "sell", "task": "sell the car"})

    assert response.status_code == 200
    assert response.json() == {}
    body = client.get(location).json()
    assert (body["name"], body["task"]) == ("sell", "sell the car")


def test_update_needs_both_fields(client: httpx.Client) -> None:
    location = create(client)

    response = client.put(location, json={"name": "only a name"})

    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert "task" in response.json()["message"]
    assert client.get(location).json()["name"] == "buy"


def test_delete_removes_the_todo(client: httpx.Client) -> None:
    location = create(client)

    assert client.delete(location).status_code == 200

    assert client.get(location).status_code == 404
    assert client.delete(location).status_code == 404
    assert client.get(TODOS).json()["urls"] == []


def test_missing_todo_is_404_json(client: httpx.Client) -> None:
    response = client.get(f"{TODOS}987654")

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "not found"


def test_huge_id_is_404_not_a_server_error(client: httpx.Client) -> None:
    assert client.get(f"{TODOS}{2**70}").status_code == 404
