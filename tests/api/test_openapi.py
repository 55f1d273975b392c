"""The OpenAPI document states every status, header and scheme the API can answer with.

Fuzzing (test_fuzz.py) proves that what the API sends is documented; these tests pin the statuses
fuzzing seldom provokes (304, 412, 413, 429, 503), which must be documented all the same.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.servers import REDIS_URL
from todo_api.app import create_app
from todo_common.settings import Settings

PUBLIC = {"/healthz", "/readyz"}
ITEM = "/api/v1.0/todos/{todo_id}"
ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorOut"}


async def spec_of(settings: Settings) -> dict[str, Any]:
    response = await create_app(settings).test_client().get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = await response.get_json()
    return spec


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


@pytest.mark.parametrize("token_auth", [False, True], ids=["passwords", "tokens"])
async def test_every_error_is_documented_with_the_json_error_body(token_auth: bool) -> None:
    spec = await spec_of(Settings(use_token_auth=token_auth))
    assert set(spec["components"]["schemas"]["ErrorOut"]["required"]) == {
        "status",
        "error",
        "message",
        "type",
        "title",
        "detail",
    }
    for path, method, operation in operations(spec):
        responses = operation["responses"]
        expected = {"405"} if path in PUBLIC else {"401", "405", "503"}
        if path == ITEM:
            expected.add("404")
        if method in {"put", "delete"} or (method == "get" and path.startswith("/api/")):
            expected.add("412")
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
            assert operation["requestBody"]["required"] is True
        assert expected <= set(responses), (method, path)
        assert "429" not in responses  # rate limits are off
        for status, response in responses.items():
            assert "X-Request-ID" in response["headers"]
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == ERROR_SCHEMA
        if path not in PUBLIC:
            assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True


async def test_conditional_gets_document_304_and_their_etag() -> None:
    spec = await spec_of(Settings())
    for path, method, operation in operations(spec):
        if method == "get" and path.startswith("/api/"):
            responses = operation["responses"]
            assert responses["200"]["headers"]["ETag"]["required"] is True
            assert responses["304"]["headers"]["ETag"]["required"] is True
            assert "content" not in responses["304"]


async def test_rate_limits_document_429_and_their_headers() -> None:
    settings = Settings(use_token_auth=True, use_rate_limits=True, redis_url=REDIS_URL)
    spec = await spec_of(settings)
    for path, _method, operation in operations(spec):
        responses = operation["responses"]
        if path in PUBLIC:
            assert "429" not in responses
            continue
        assert responses["429"]["headers"]["Retry-After"]["required"] is True
        for response in responses.values():
            assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(
                response["headers"]
            )


async def test_security_says_who_may_call_what() -> None:
    passwords = await spec_of(Settings())
    tokens = await spec_of(Settings(use_token_auth=True))
    assert set(passwords["components"]["securitySchemes"]) == {"basic"}
    assert set(tokens["components"]["securitySchemes"]) == {"basic", "bearer", "tokenAsBasic"}
    for path, _method, operation in operations(tokens):
        if path in PUBLIC:
            assert operation["security"] == []
        elif path == "/auth/request-token":
            assert operation["security"] == [{"basic": []}]
        else:
            assert operation["security"] == [{"bearer": []}, {"tokenAsBasic": []}]


async def test_a_created_todo_links_to_the_operations_on_it() -> None:
    spec = await spec_of(Settings())
    created = spec["paths"]["/api/v1.0/todos/"]["post"]["responses"]["201"]
    assert created["headers"]["Location"]["required"] is True
    targets = {link["operationId"] for link in created["links"].values()}
    assert targets == {operation["operationId"] for operation in spec["paths"][ITEM].values()}
