"""The fast route: GET of one todo and of the todo list (200 and 304) served in front of the
Quart app.

Measured, Quart's request machinery costs about as much per request as a whole bare app, so the
API's most frequent requests are answered here, straight from the ASGI scope, with the same
functions the Quart blueprint calls (`Gate.admit`, `read_todo_item`, `read_todo_page`,
`ErrorReplies`): nothing is implemented twice, and `tests/api/test_fast_route.py` sends the same
requests both ways and requires the same answers. Anything else (another method or path, a
request with a body, a query string that is not UTF-8, an app mounted under a root path) goes on
to Quart untouched.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" codec error handler)
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from todo_api.access import Gate
from todo_api.errors import ErrorReplies
from todo_api.hits import HitCounter
from todo_api.item import ITEM_ROUTE, read_todo_item
from todo_api.listing import LIST_ROUTE, read_todo_page
from todo_api.observability import request_id_in, set_route
from todo_api.replies import send_reply
from todo_api.representation import TODOS_PATH, todo_url_prefix
from todo_api.resources import Database
from todo_api.routing import decimals_up_to
from todo_api.schemas import ID_MAX
from todo_common.settings import Settings

# The one spelling of a todo's path the Quart route accepts too (see todo_api.routing).
_ITEM_PATH = re.compile(re.escape(TODOS_PATH) + f"({decimals_up_to(ID_MAX)})")
_LIST_PATHS = (TODOS_PATH, TODOS_PATH.rstrip("/"))  # both, as Quart's routing answers
_BODY_HEADERS = (b"content-length", b"transfer-encoding")


def _query(query_string: bytes) -> dict[str, str]:
    """Each parameter's first value, parsed as Quart's `request.args` parses (UnicodeDecodeError
    for a query string that is not UTF-8)."""
    query: dict[str, str] = {}
    for name, value in parse_qsl(
        query_string.decode(), keep_blank_values=True, errors="werkzeug.url_quote"
    ):
        query.setdefault(name, value)
    return query


class FastTodoReads:
    def __init__(
        self,
        app: ASGIFramework,
        *,
        gate: Gate,
        database: Database,
        settings: Settings,
        hits: HitCounter | None,
        replies: ErrorReplies,
    ) -> None:
        self.app = app
        self.gate = gate
        self.database = database
        self.settings = settings
        self.hits = hits
        self.replies = replies

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        query: dict[str, str] | None = None
        todo_id = 0
        if scope["path"] in _LIST_PATHS:
            try:
                query = _query(scope["query_string"])
            except UnicodeDecodeError:
                await self.app(scope, receive, send)  # Quart's answer, whatever it is
                return
        elif (match := _ITEM_PATH.fullmatch(scope["path"])) is not None:
            todo_id = int(match[1])
        else:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, str] = {}
        for name, value in scope["headers"]:
            name = name.lower()
            if name in _BODY_HEADERS and (name != b"content-length" or value.strip() != b"0"):
                await self.app(scope, receive, send)  # a body to take in: Quart's work
                return
            headers.setdefault(name, value.decode("latin-1"))
        set_route(scope, ITEM_ROUTE if query is None else LIST_ROUTE)
        client = scope.get("client")
        admission = None
        try:
            admission = await self.gate.admit(
                headers.get(b"authorization"), client[0] if client else None
            )
            url_prefix = todo_url_prefix(
                scope["scheme"], headers.get(b"host"), scope.get("server"), ""
            )
            if query is None:
                reply = await read_todo_item(
                    self.database,
                    principal=admission.principal,
                    todo_id=todo_id,
                    url_prefix=url_prefix,
                    if_match=headers.get(b"if-match"),
                    if_none_match=headers.get(b"if-none-match"),
                    hits=self.hits,
                    request_id=request_id_in(scope),
                )
            else:
                reply = await read_todo_page(
                    self.database,
                    principal=admission.principal,
                    settings=self.settings,
                    query=query,
                    url_prefix=url_prefix,
                    if_match=headers.get(b"if-match"),
                    if_none_match=headers.get(b"if-none-match"),
                )
        except Exception as error:
            reply = self.replies.reply_for(error)
        if admission is not None and admission.headers:
            reply.headers.update(admission.headers)
        await send_reply(reply, send)
