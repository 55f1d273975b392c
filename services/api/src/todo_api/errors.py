"""One exception for API failures and the app-level handlers that turn every 4xx/5xx into JSON.

Error bodies keep the seed's keys (`status`, `error`, `message`) and add RFC 9457's (`type`,
`title`, `detail`), whatever raised them: our `APIError`, Quart's routing (404/405), body parsing
(400/413/415), schema validation (400) or an unexpected exception (500, logged with its traceback).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
import structlog
from quart import Quart, Response
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

log = structlog.get_logger(__name__)

# Headers a framework error carries that the client needs (e.g. Allow on a 405).
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


class APIError(Exception):
    """Abort the request with `status`, a human `message` and optional extra headers."""

    def __init__(
        self, status: int, message: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message or HTTPStatus(status).description)
        self.status = status
        self.message = message or HTTPStatus(status).description
        self.headers = headers or {}


def error_response(
    status: int, message: str, headers: dict[str, str] | list[tuple[str, str]] | None = None
) -> Response:
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "status": status,
        "error": phrase.lower(),
        "message": message,
        "type": "about:blank",
        "title": phrase,
        "detail": message,
    }
    return Response(
        orjson.dumps(body), status=status, headers=headers, content_type="application/json"
    )


def _validation_message(error: RequestSchemaValidationError) -> str:
    validation = error.validation_error
    errors = getattr(validation, "errors", None)
    if callable(errors):
        parts = []
        for item in errors():
            where = ".".join(str(part) for part in item["loc"]) or "body"
            parts.append(f"{where}: {item['msg']}")
        return "; ".join(parts) or "invalid request body"
    return f"invalid request body: {validation}"


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(APIError)
    async def _api_error(error: APIError) -> Response:
        return error_response(error.status, error.message, error.headers)

    @app.errorhandler(RequestSchemaValidationError)
    async def _schema_error(error: RequestSchemaValidationError) -> Response:
        return error_response(400, _validation_message(error))

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        if status < 400:  # redirects and 304s raised as exceptions pass through untouched
            return error.get_response()  # type: ignore[return-value]
        kept = [(k, v) for k, v in error.get_headers() if k in _KEPT_HEADERS]
        return error_response(status, error.description or HTTPStatus(status).description, kept)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return error_response(500, "the server failed to handle this request")
