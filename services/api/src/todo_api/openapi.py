"""The OpenAPI document: quart-schema's, completed with what it cannot see in the handlers.

quart-schema documents the success bodies each handler declares. The rest of the contract lives in
hooks shared by many routes (authentication, rate limits, conditional requests, body parsing, the
error handlers), so it is added here, in one pass over the generated document: every error status
an operation can answer with the JSON error body (`ErrorOut`), the response headers clients rely
on, who may call what (security), and links from a created todo to the operations on it, which
stateful fuzzing (tests/api/test_fuzz.py) follows. The fuzzing proves the document complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from quart import Quart
from quart_schema import OpenAPIProvider
from werkzeug.routing.converters import BaseConverter, IntegerConverter

from todo_api.resources import settings_of
from todo_api.schemas import ErrorOut
from todo_common.settings import Settings

ERROR = {"$ref": "#/components/schemas/ErrorOut"}

_INTEGER = {"type": "integer"}
_TEXT = {"type": "string"}
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {"description": "the request's id (the client's own if sane)", "schema": _TEXT},
    "ETag": {"description": "strong entity tag of the representation", "schema": _TEXT},
    "Location": {"description": "absolute URL of the new todo", "schema": _TEXT},
    "Link": {"description": "next, prev, first and last pages (RFC 8288)", "schema": _TEXT},
    "Cache-Control": {"description": "no-cache, no-store, max-age=0", "schema": _TEXT},
    "WWW-Authenticate": {"description": "the schemes this route takes", "schema": _TEXT},
    "Allow": {"description": "the methods this path supports", "schema": _TEXT},
    "Retry-After": {"description": "seconds to wait before retrying", "schema": _INTEGER},
    "X-RateLimit-Limit": {"description": "requests allowed per window", "schema": _INTEGER},
    "X-RateLimit-Remaining": {"description": "requests left in this window", "schema": _INTEGER},
    "X-RateLimit-Reset": {
        "description": "end of this window, UTC epoch seconds",
        "schema": _INTEGER,
    },
}
RATE_LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")

ERRORS = {
    400: "malformed JSON, a field or query parameter out of bounds",
    401: "missing or invalid credentials (see WWW-Authenticate)",
    404: "no such todo, or another user's",
    405: "the path does not support this method (see Allow)",
    412: "If-Match does not match the current ETag (or If-None-Match does, on a write)",
    413: "the body is over the size limit (TODO_MAX_BODY_BYTES)",
    415: "the body is not application/json",
    429: "rate limit exceeded (see Retry-After)",
    503: "a dependency (the database; the rate limiter on the login route) is unreachable",
}

PUBLIC_PATHS = ("/healthz", "/readyz")
COLLECTION = "/api/v1.0/todos/"
ITEM = "/api/v1.0/todos/{todo_id}"
ITEM_ID = r"$response.header.Location#regex:/todos/(\d+)$"


def _header(name: str, required: bool = False) -> dict[str, Any]:
    # Inline, not a $ref: OpenAPI 3.1 ignores `required` beside a $ref.
    return HEADERS[name] | {"required": required}


@dataclass(frozen=True)
class Operation:
    """One operation of the document, with what its path and method say about it."""

    path: str
    method: str
    spec: dict[str, Any]

    @property
    def public(self) -> bool:
        return self.path in PUBLIC_PATHS

    @property
    def conditional_get(self) -> bool:
        """GETs of /api answer with a strong ETag, 304 on If-None-Match and 412 on If-Match."""
        return self.method == "get" and self.path.startswith("/api/")

    def error_statuses(self, settings: Settings) -> set[int]:
        """Every error this operation can answer with; any path answers 405 to other methods."""
        statuses = {405}
        if self.path == "/readyz":
            statuses.add(503)
        if self.public:
            return statuses
        statuses |= {401, 503}  # credentials are checked; the database may be down
        if settings.use_rate_limits:
            statuses.add(429)
        if "requestBody" in self.spec:
            statuses |= {400, 413, 415}
        if any(parameter["in"] == "query" for parameter in self.spec.get("parameters", [])):
            statuses.add(400)
        if self.path == ITEM:
            statuses.add(404)
        if self.method in {"put", "delete"} or self.conditional_get:
            statuses.add(412)
        return statuses

    def security(self, settings: Settings) -> list[dict[str, list[str]]]:
        if self.public:
            return []
        if self.path.startswith("/auth/") or not settings.use_token_auth:
            return [{"basic": []}]
        return [{"bearer": []}, {"tokenAsBasic": []}]

    def success_headers(self, status: str) -> dict[str, dict[str, Any]]:
        headers = {}
        if status == "201":
            headers["Location"] = _header("Location", required=True)
        if self.conditional_get or (self.method == "put" and self.path == ITEM):
            headers["ETag"] = _header("ETag", required=True)
        if self.conditional_get and self.path == COLLECTION:
            headers["Link"] = _header("Link", required=True)
        if self.path.startswith("/auth/"):
            headers["Cache-Control"] = _header("Cache-Control", required=True)
        return headers


def _error_response(status: int) -> dict[str, Any]:
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = _header("WWW-Authenticate", required=True)
    if status == 405:
        headers["Allow"] = _header("Allow", required=True)
    if status in {429, 503}:  # a 503 of the login route's fail-closed limiter says when, too
        headers["Retry-After"] = _header("Retry-After", required=status == 429)
    return {
        "description": ERRORS[status],
        "headers": headers,
        "content": {"application/json": {"schema": ERROR}},
    }


def _complete_operation(operation: Operation, settings: Settings) -> None:
    spec = operation.spec
    # quart-schema keys responses by int; JSON (and sorting) needs one type.
    responses = spec["responses"] = {str(k): v for k, v in spec["responses"].items()}
    for status, response in responses.items():
        response["description"] = response.get("description") or HTTPStatus(int(status)).phrase
        response["headers"] = operation.success_headers(status)
    if operation.conditional_get:
        responses["304"] = {
            "description": "If-None-Match matches the current ETag: no body",
            "headers": {"ETag": _header("ETag", required=True)},
        }
    for status in sorted(operation.error_statuses(settings)):
        responses[str(status)] = _error_response(status)
    for response in responses.values():
        response["headers"]["X-Request-ID"] = _header("X-Request-ID", required=True)
        if settings.use_rate_limits and not operation.public:
            # Not required: while Redis is unreachable the limiter fails open, without headers.
            response["headers"].update({name: _header(name) for name in RATE_LIMIT_HEADERS})
    spec["security"] = operation.security(settings)
    if "requestBody" in spec:
        spec["requestBody"]["required"] = True  # `read_body` refuses an empty body


def _link_created_todo(paths: dict[str, Any]) -> None:
    """POST's Location names the new todo; a PUT or DELETE leads back to the same todo."""
    item = paths.get(ITEM, {})
    targets = {method: operation["operationId"] for method, operation in item.items()}
    created = paths.get(COLLECTION, {}).get("post", {}).get("responses", {}).get("201")
    if created is not None:
        created["links"] = {
            f"{method.capitalize()}Todo": {
                "operationId": target,
                "parameters": {"todo_id": ITEM_ID},
            }
            for method, target in targets.items()
        }
    for method in ("put", "delete"):
        done = item.get(method, {}).get("responses", {}).get("200")
        if done is not None and "get" in targets:
            done["links"] = {
                "GetTodo": {
                    "operationId": targets["get"],
                    "parameters": {"todo_id": "$request.path.todo_id"},
                }
            }


def _security_schemes(settings: Settings) -> dict[str, dict[str, str]]:
    basic = {"type": "http", "scheme": "basic"}
    if not settings.use_token_auth:
        return {"basic": basic | {"description": "username:password"}}
    return {
        "basic": basic | {"description": "username:password; only for /auth/request-token"},
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "tokenAsBasic": basic
        | {"description": "the seed's form: the token as the username, an empty password"},
    }


def complete(spec: dict[str, Any], settings: Settings) -> dict[str, Any]:
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorOut"] = ErrorOut.model_json_schema()
    components["securitySchemes"] = _security_schemes(settings)
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            _complete_operation(Operation(path, method, operation), settings)
    _link_created_todo(spec["paths"])
    return spec


class TodoOpenAPIProvider(OpenAPIProvider):
    def build_path_parameter(self, name: str, converter: BaseConverter) -> dict[str, Any]:
        parameter = super().build_path_parameter(name, converter)
        if isinstance(converter, IntegerConverter):
            # Routing answers 404 outside the converter's bounds: document them.
            low = converter.min if converter.min is not None or converter.signed else 0
            bounds = {"minimum": low, "maximum": converter.max}
            parameter["schema"].update({k: v for k, v in bounds.items() if v is not None})
        return parameter

    def operation_id(self, method: str, path: str, func: Callable[..., Any]) -> str:
        # Each view serves one method, so its name is a unique, readable id.
        return func.__name__

    def schema(self) -> dict[str, Any]:
        app = cast(Quart, self._app)  # a weak proxy of the app
        return complete(super().schema(), settings_of(app))
