"""Probes, metrics, request ids, the OpenAPI document and the offline docs page."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx

from tests.api.test_todos import TODOS
from tests.support import local_http
from tests.support.servers import ApiServer, free_port, start_api


def test_healthz_and_readyz(api: ApiServer) -> None:
    with api.client() as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json() == {"status": "ready"}


def test_readyz_is_503_json_when_the_database_is_down(tmp_path: Path) -> None:
    dead = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    server = start_api({"TODO_DATABASE_URL": dead, "TODO_DB_TIMEOUT": "1"}, tmp_path)
    try:
        with server.client() as http:
            ready = http.get("/readyz")
            alive = http.get("/healthz")
    finally:
        server.stop()
    assert ready.status_code == 503
    assert ready.json()["status"] == 503
    assert alive.status_code == 200


def test_request_id_is_echoed_or_generated_and_logged(api: ApiServer) -> None:
    with api.client(auth=api.add_user()) as http:
        echoed = http.get(TODOS, headers={"X-Request-ID": "trace-42.abc"})
        replaced = http.get(TODOS, headers={"X-Request-ID": "bad id\twith spaces"})
        generated = http.get(TODOS)

    assert echoed.headers["X-Request-ID"] == "trace-42.abc"
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-ID"])
    assert generated.headers["X-Request-ID"] != replaced.headers["X-Request-ID"]
    lines = [json.loads(line) for line in api.log().splitlines() if "trace-42.abc" in line]
    assert lines and all(line["request_id"] == "trace-42.abc" for line in lines)


def _sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{"):
            series, value = line.rsplit(" ", 1)
            found = ",".join(sorted(series[len(name) + 1 : -1].split(",")))
            if found == wanted:
                return float(value)
    return 0.0


def test_metrics_count_requests_by_route_across_two_workers(tmp_path: Path, databases) -> None:  # type: ignore[no-untyped-def]
    server = start_api({"TODO_DATABASE_URL": databases.create("sqlite")}, tmp_path, workers=2)

    def served_by() -> set[object]:
        return {
            entry["pid"]
            for entry in map(json.loads, server.log().splitlines())
            if entry.get("event") == "request" and entry.get("status") == 401
        }

    async def thirty_at_once() -> list[int]:
        # Each on a connection of its own, open at the same time, so both workers accept some.
        fresh = httpx.Limits(max_connections=30, max_keepalive_connections=0)
        async with local_http.async_client(base_url=server.url, limits=fresh) as http:
            answers = await asyncio.gather(*(http.get(f"{TODOS}12") for _ in range(30)))
        return [answer.status_code for answer in answers]

    sent = 0
    try:
        for _ in range(10):  # until both workers have answered some (one round nearly always)
            assert asyncio.run(thirty_at_once()) == [401] * 30
            sent += 30
            if len(served_by()) == 2:
                break
        text = local_http.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    labels = {
        "method": "GET",
        "route": "/api/v1.0/todos/<todo_id>",  # the route template, converters left out
        "status": "401",
    }
    assert _sample(text, "todo_http_requests_total", **labels) == sent
    assert _sample(text, "todo_http_request_duration_seconds_count", **labels) == sent
    assert len(served_by()) == 2


def test_openapi_documents_the_api(api: ApiServer) -> None:
    spec = local_http.get(f"{api.url}/openapi.json").json()

    assert spec["openapi"].startswith("3.")
    assert "/api/v1.0/todos/" in spec["paths"]
    assert set(spec["paths"]["/api/v1.0/todos/"]) >= {"get", "post"}
    assert "basic" in spec["components"]["securitySchemes"]


def test_docs_page_uses_only_local_assets(api: ApiServer) -> None:
    with api.client() as http:
        page = http.get("/docs")
        assert page.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets
        for asset in assets:
            assert asset.startswith("/docs/assets/"), asset
            assert http.get(asset).status_code == 200
    assert "https://" not in page.text and "http://" not in page.text
