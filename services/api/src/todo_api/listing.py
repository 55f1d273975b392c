"""GET of the todo list, once: the fast route (`todo_api.hot`) and the Quart blueprint both call
`read_todo_page` after the gate has admitted the caller.

The page is read in one statement (two for a bare page number past the first, which needs the
total to know which end to skip from), then answered through the same conditional logic as a
todo, with the body's digest as its ETag.
"""

from __future__ import annotations

from collections.abc import Mapping

from todo_api.auth import Principal
from todo_api.conditional import body_tag, conditional_reply, to_json
from todo_api.pagination import page_meta, requested_page
from todo_api.replies import Reply
from todo_api.resources import Database
from todo_api.schemas import TodoPage
from todo_common.settings import Settings

# The route's metrics label, for both ways in.
LIST_ROUTE = "/api/v1.0/todos/"


async def read_todo_page(
    database: Database,
    *,
    principal: Principal,
    settings: Settings,
    query: Mapping[str, str],
    url_prefix: str,
    if_match: str | None,
    if_none_match: str | None,
) -> Reply:
    """The page `query` asks for (page, per_page, after, before: the first value of each).
    Raises a 400 `APIError` for a bad parameter, `CredentialsRevoked`, or a 412."""
    page = requested_page(settings, query)
    owner, password_version = principal.user_id, principal.password_version
    async with database.store() as store:
        total = None
        if page.needs_total_first:
            total = await store.count_todos(owner_id=owner, password_version=password_version)
        total, ids = await store.list_todo_ids(
            owner_id=owner, password_version=password_version, window=page.window(total)
        )
    # The list's own URL is the todos' prefix: each todo's is it and the id.
    meta, headers = page_meta(url_prefix, page, total, ids)
    encoded = to_json(TodoPage(urls=[f"{url_prefix}{todo_id}" for todo_id in ids], meta=meta))
    return conditional_reply(
        body_tag(encoded),
        lambda: encoded,
        if_match=if_match,
        if_none_match=if_none_match,
        headers=headers,
    )
