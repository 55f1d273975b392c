"""GET of one todo, once: the fast route (`todo_api.hot`) and the Quart blueprint both call
`read_todo_item` after the gate has admitted the caller.

One statement reads the todo and checks the caller's password version (`Store.get_todo`); the
conditional logic answers 200, 304 or 412; a 200 or a 304 of a GET counts as a view.
"""

from __future__ import annotations

from todo_api.auth import Principal
from todo_api.conditional import conditional_reply, todo_tag
from todo_api.hits import HitCounter
from todo_api.replies import Reply
from todo_api.representation import todo_body
from todo_api.resources import Database
from todo_common.exceptions import TodoNotFound

# The route's metrics label, for both ways in (routing details stay out of dashboards).
ITEM_ROUTE = "/api/v1.0/todos/<todo_id>"


async def read_todo_item(
    database: Database,
    *,
    principal: Principal,
    todo_id: int,
    url_prefix: str,
    if_match: str | None,
    if_none_match: str | None,
    hits: HitCounter | None,
    request_id: str | None,
) -> Reply:
    """The todo's answer. Raises `TodoNotFound`, `CredentialsRevoked` or a 412 `APIError`.
    `hits` is None when views are not counted (counting off, or a HEAD)."""
    async with database.store() as store:
        todo = await store.get_todo(
            owner_id=principal.user_id,
            password_version=principal.password_version,
            todo_id=todo_id,
        )
    if todo is None:
        raise TodoNotFound(todo_id)
    reply = conditional_reply(
        todo_tag(todo.id, todo.version),
        lambda: todo_body(todo, url_prefix),
        if_match=if_match,
        if_none_match=if_none_match,
    )
    if hits is not None:
        hits.count(principal.user_id, todo_id, request_id)
    return reply
