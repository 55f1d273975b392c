"""`/api/v1.0/stats`: the caller's own figures, behind the same auth and caching as the rest.
(The worker tests prove the hit figures after real flushes.)"""

from __future__ import annotations

import httpx

from tests.support import local_http
from tests.support.servers import ApiServer


def test_stats_count_only_the_callers_todos(api: ApiServer) -> None:
    with (
        api.client(auth=api.add_user()) as owner,
        api.client(auth=api.add_user()) as other,
    ):
        for _ in range(3):
            owner.post("/api/v1.0/todos/", json={"name": "n", "task": "t"})
        response = owner.get("/api/v1.0/stats")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {"todos": 3, "hits": 0, "most_viewed": []}
        assert other.get("/api/v1.0/stats").json() == {"todos": 0, "hits": 0, "most_viewed": []}


def test_stats_need_credentials(api: ApiServer) -> None:
    response = local_http.get(f"{api.url}/api/v1.0/stats")
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    assert response.json()["status"] == 401


def test_stats_have_an_etag_that_changes_with_them(client: httpx.Client) -> None:
    first = client.get("/api/v1.0/stats")
    tag = first.headers["ETag"]
    assert client.get("/api/v1.0/stats", headers={"If-None-Match": tag}).status_code == 304
    client.post("/api/v1.0/todos/", json={"name": "n", "task": "t"})
    changed = client.get("/api/v1.0/stats", headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != tag


def test_stats_are_rate_limited(limited_api: ApiServer) -> None:
    with limited_api.client(
        auth=limited_api.add_user(), headers={"X-Forwarded-For": "203.0.113.77"}
    ) as client:
        statuses = [client.get("/api/v1.0/stats").status_code for _ in range(6)]
        last = client.get("/api/v1.0/stats")
    assert statuses == [200] * 5 + [429]
    assert last.headers["X-RateLimit-Limit"] == "5"
    assert "Retry-After" in last.headers
