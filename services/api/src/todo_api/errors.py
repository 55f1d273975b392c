"""One exception for API failures and the app-level handlers that turn every 4xx/5xx into JSON.

Error bodies keep the seed's keys (`status`, `error`, `message`) and add RFC 9457's (`type`,
`title`, `detail`), whatever raised them: our `APIError`, Quart's routing (404/405), body parsing
(400/413/415) or an unexpected exception (500, logged with its traceback).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
import structlog
from quart import Quart, Response
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


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
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


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(APIError)
    async def _api_error(error: APIError) -> Response:
        return error_response(error.status, error.message, error.headers)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        kept = {k: v for k, v in error.get_headers() if k in _KEPT_HEADERS}
        return error_response(status, error.description or HTTPStatus(status).description, kept)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        return error_response(500, "the server failed to handle this request")
