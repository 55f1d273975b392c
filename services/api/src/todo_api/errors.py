"""The app-level handlers that turn every 4xx/5xx into JSON.

Error bodies keep the seed's keys (`status`, `error`, `message`) and add RFC 9457's (`type`,
`title`, `detail`), whatever raised them: our `APIError`, Quart's routing (404/405), body parsing
(400/413/415) or an unexpected exception (500, logged with its traceback).

`DatabaseUnavailable` (the database is unreachable, restarting, out of connections or too slow;
raised by the `Database` boundary, see `todo_common.db.translate_database_errors`) is not a bug:
it becomes a 503 with Retry-After, and a warning (at most one per few seconds, with how many were
not logged). Any other exception is one: a 500.

Before an error response goes out, the rest of the request body is taken in (see
`_receive_body`): hypercorn silently closes a connection whose request body it had not finished
reading when the response ended, and a client reusing that connection would then fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus

import orjson
import structlog
from quart import Quart, Response, has_request_context, request
from werkzeug.exceptions import HTTPException

from todo_api.auth import unauthorized
from todo_api.replies import Reply, as_response, json_reply
from todo_common.degraded import Degraded

# Defined in the exception tree; re-exported so `from todo_api.errors import APIError` works.
from todo_common.exceptions import APIError as APIError
from todo_common.exceptions import (
    CredentialsRevoked,
    DatabaseUnavailable,
    TodoError,
    TodoNotFound,
    VersionConflict,
)

log = structlog.get_logger(__name__)

# Headers a framework error carries that the client needs (e.g. Allow on a 405).
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")
# A database restart takes seconds; a client should not come back sooner.
DATABASE_RETRY_AFTER_SECONDS = 5
_LOG_UNAVAILABLE_EVERY_SECONDS = 5.0
# The 412 of a write whose If-Match (or If-None-Match) no longer holds.
PRECONDITION_FAILED_MESSAGE = "the resource has changed: its ETag no longer matches If-Match"
# How long an early error response waits for a body the client is still sending.
_BODY_WAIT_SECONDS = 1.0


def error_body(status: int, message: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    return orjson.dumps(
        {
            "status": status,
            "error": phrase.lower(),
            "message": message,
            "type": "about:blank",
            "title": phrase,
            "detail": message,
        }
    )


def error_reply(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply(error_body(status, message), status, headers)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return as_response(error_reply(status, message, headers))


def database_unavailable_reply() -> Reply:
    return error_reply(
        503,
        "the database is unavailable; retry later",
        {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def database_unavailable_response() -> Response:
    return as_response(database_unavailable_reply())


class ErrorReplies:
    """The answer to each exception of ours, for the Quart handlers and the fast route alike.

    `DatabaseUnavailable` is answered 503 and logged at most every few seconds (no back-off:
    every request tries the database, which may be back); anything not ours is a bug: 500, logged
    with its traceback. `CredentialsRevoked` is answered 401 and reported to `on_revoked` (the
    password checker forgets the user's known logins)."""

    def __init__(self, use_token_auth: bool, on_revoked: Callable[[int], None]) -> None:
        self.use_token_auth = use_token_auth
        self.on_revoked = on_revoked
        self.unavailable = Degraded(
            "database",
            "database unavailable; answering 503",
            log_every=_LOG_UNAVAILABLE_EVERY_SECONDS,
        )

    def reply_for(self, error: Exception) -> Reply:
        if isinstance(error, APIError):
            return error_reply(error.status, error.message, error.headers)
        if isinstance(error, TodoNotFound):
            return error_reply(404, f"todo {error.todo_id} not found")
        if isinstance(error, VersionConflict):
            return error_reply(412, PRECONDITION_FAILED_MESSAGE)
        if isinstance(error, CredentialsRevoked):
            self.on_revoked(error.user_id)
            refused = unauthorized(
                token_auth=self.use_token_auth, message="these credentials have been revoked"
            )
            return error_reply(401, refused.message, refused.headers)
        if isinstance(error, DatabaseUnavailable):
            self.unavailable.record(error)
            return database_unavailable_reply()
        log.exception("unhandled error", exc_info=error)
        return error_reply(500, "the server failed to handle this request")


async def _receive_body() -> bool:
    """Take in the rest of the request body before answering with an error; whether all of it
    came (or there was none).

    An error raised before the handler read the body (a 401, 429 or 503 from a hook) can finish
    the response before hypercorn has read the whole request; hypercorn then closes the
    connection, and a client that sends its next request on it gets no response at all. Bodies
    are small (TODO_MAX_BODY_BYTES); a client that stalls its body gets its answer after a
    second anyway, with `Connection: close` (see `_closing_unless`)."""
    if not has_request_context():
        return True
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not (request.content_length or chunked):
        return True
    try:
        await asyncio.wait_for(request.get_data(), _BODY_WAIT_SECONDS)
    except Exception:  # too large (413), timed out, client gone
        return False
    return True


def _closing_unless(body_read: bool, response: Response) -> Response:
    """A response sent before the whole request body came in says `Connection: close`:
    hypercorn closes such a connection, and a client told so opens a new one for its next
    request instead of losing it on this one."""
    if not body_read:
        response.headers["Connection"] = "close"
    return response


def register_error_handlers(app: Quart, replies: ErrorReplies) -> None:
    @app.errorhandler(TodoError)
    async def _ours(error: TodoError) -> Response:
        body_read = await _receive_body()
        return _closing_unless(body_read, as_response(replies.reply_for(error)))

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        # A body too large to take in is the error itself: it is never read to the end.
        body_read = error.code != 413 and await _receive_body()
        status = error.code or 500
        kept = {k: v for k, v in error.get_headers() if k in _KEPT_HEADERS}
        response = error_response(status, error.description or HTTPStatus(status).description, kept)
        return _closing_unless(body_read, response)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        body_read = await _receive_body()
        return _closing_unless(body_read, as_response(replies.reply_for(error)))
