"""The OpenAPI document: quart-schema's, completed with what it cannot see in the handlers.

quart-schema documents the success bodies each handler declares. The statuses a route can answer
with besides those are declared with the route: `@responds_with(404, 412)` on a view, and
`blueprint_responds_with(blueprint, *GATE_ERRORS)` for what a blueprint's hooks (authentication,
rate limits) add to every route of it; 405 from routing applies to every path. From those
declarations this module completes the generated document in one pass: every error status with
the JSON error body (`ErrorOut`), 304 and the ETag of conditional GETs (a declared 304), the
response headers clients rely on, who may call what (security), and links from a created todo to
the operations on it, which stateful fuzzing (tests/api/test_fuzz.py) follows. The fuzzing proves
the document complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar, cast

from quart import Blueprint, Quart
from quart_schema import OpenAPIProvider
from werkzeug.routing import Rule
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

NOT_MODIFIED = 304
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

# What the request gate in front of /api and /auth (todo_api.access) can answer: bad credentials,
# over the rate limit (documented only when TODO_USE_RATE_LIMITS is on), a dependency down.
GATE_ERRORS = (401, 429, 503)
RATE_LIMITED = 429

_STATUSES = "_todo_responds_with"  # the attribute a declaration sets on a view or blueprint
_DECLARED = "x-todo-responds-with"  # carries them from `build_paths` to `complete`

ViewT = TypeVar("ViewT", bound=Callable[..., Any])


def responds_with(*statuses: int) -> Callable[[ViewT], ViewT]:
    """Declare the statuses a view answers with besides its documented bodies: its errors, and
    304 for a conditional GET (a strong ETag, If-None-Match and If-Match)."""

    def declare(view: ViewT) -> ViewT:
        setattr(view, _STATUSES, frozenset(getattr(view, _STATUSES, ())) | set(statuses))
        return view

    return declare


def blueprint_responds_with(blueprint: Blueprint, *statuses: int) -> None:
    """Declare the statuses every route of `blueprint` can answer with (its hooks' errors)."""
    setattr(blueprint, _STATUSES, frozenset(getattr(blueprint, _STATUSES, ())) | set(statuses))


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
    declared: frozenset[int]  # what the view and its blueprint declared (`responds_with`)

    @property
    def public(self) -> bool:
        """No credentials needed: nothing in front of it can answer 401."""
        return 401 not in self.declared

    @property
    def conditional_get(self) -> bool:
        """A strong ETag on 200, 304 on If-None-Match (and 412 on If-Match)."""
        return NOT_MODIFIED in self.declared

    @property
    def rate_limited(self) -> bool:
        return RATE_LIMITED in self.declared

    def error_statuses(self, settings: Settings) -> set[int]:
        """Every error this operation can answer with; any path answers 405 to other methods."""
        statuses = {405} | {status for status in self.declared if status >= 400}
        if not settings.use_rate_limits:
            statuses.discard(RATE_LIMITED)
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
        if settings.use_rate_limits and operation.rate_limited:
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
            declared = frozenset(operation.pop(_DECLARED, ()))
            _complete_operation(Operation(path, method, operation, declared), settings)
    _link_created_todo(spec["paths"])
    return spec


class TodoOpenAPIProvider(OpenAPIProvider):
    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        view = self._app.view_functions[rule.endpoint]
        blueprint_name, dot, _ = rule.endpoint.rpartition(".")
        blueprint = self._app.blueprints.get(blueprint_name) if dot else None
        declared = set(getattr(view, _STATUSES, ())) | set(getattr(blueprint, _STATUSES, ()))
        for operations in paths.values():
            for operation in operations.values():
                operation[_DECLARED] = sorted(declared)
        return paths, components

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
