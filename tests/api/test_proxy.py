"""X-Forwarded-* are honoured from a trusted proxy hop and ignored otherwise."""

from __future__ import annotations

from tests.api.test_todos import TODOS
from tests.support.servers import ApiServer

FORWARDED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "todo.example.com",
}


def test_trusted_proxy_sets_scheme_and_host_of_urls(limited_api: ApiServer) -> None:
    with limited_api.client(auth=limited_api.add_user()) as http:
        created = http.post(TODOS, json={"name": "n", "task": "t"}, headers=FORWARDED)
        listed = http.get(TODOS, headers=FORWARDED)

    assert created.headers["Location"].startswith("https://todo.example.com/api/v1.0/todos/")
    assert listed.json()["meta"]["first"].startswith("https://todo.example.com/")


def test_only_the_trusted_hop_counts(limited_api: ApiServer) -> None:
    # A client-supplied left-most entry must not pick the rate-limit identity.
    spoofed = {"X-Forwarded-For": "1.1.1.1, 198.51.100.77"}
    with limited_api.client() as http:
        for _ in range(5):
            http.get(TODOS, headers=spoofed)
        rotated = http.get(TODOS, headers={"X-Forwarded-For": "9.9.9.9, 198.51.100.77"})
    assert rotated.status_code == 429


def test_untrusted_peer_headers_are_ignored(api: ApiServer) -> None:
    with api.client(auth=api.add_user()) as http:
        created = http.post(TODOS, json={"name": "n", "task": "t"}, headers=FORWARDED)

    assert created.headers["Location"].startswith(f"{api.url}/api/v1.0/todos/")
