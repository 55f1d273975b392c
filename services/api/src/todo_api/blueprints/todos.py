"""`/api/v1.0/todos/`: the seed's todo collection, scoped to the authenticated user."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Any

from quart import Blueprint, Response, current_app, request, url_for
from quart_schema import document_querystring, document_request, document_response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from todo_api.access import current_user_id, require_user
from todo_api.auth import unauthorized
from todo_api.bodies import read_body
from todo_api.conditional import (
    conditional_get,
    entity_tag,
    if_match_versions,
    if_none_match_blocks,
    json_body,
    json_response,
    precondition_failed,
)
from todo_api.errors import APIError
from todo_api.hits import counting_view
from todo_api.pagination import page_meta, requested_page
from todo_api.resources import database, settings_of
from todo_api.schemas import ID_MAX, Empty, PageQuery, TodoIn, TodoOut, TodoPage
from todo_api.store import (
    TodoRow,
    Versions,
    WriteOutcome,
    count_todos,
    create_todo,
    delete_todo,
    get_todo,
    list_todo_ids,
    update_todo,
)

blueprint = Blueprint("todos", __name__, url_prefix="/api/v1.0/todos")
blueprint.before_request(require_user)

# ASCII digits, 1..2^63-1 (see todo_api.routing); routing answers 404 for anything else.
TODO_ID = f"<id(max={ID_MAX}):todo_id>"


def todo_url(todo_id: int) -> str:
    return url_for("todos.get_todo_item", todo_id=todo_id, _external=True)


def represent(todo: TodoRow) -> dict[str, Any]:
    return {
        "url": todo_url(todo.id),
        "name": todo.name,
        "task": todo.task,
        "timestamp": format_datetime(todo.created_at, usegmt=True),
    }


def _not_found(todo_id: int) -> APIError:
    return APIError(404, f"todo {todo_id} not found")


@blueprint.get("/")
@document_querystring(PageQuery)
@document_response(TodoPage)
async def list_todos() -> Response:
    owner = current_user_id()
    page = requested_page(settings_of(current_app))
    async with database(current_app).connection() as session:
        total = await count_todos(session, owner) if page.needs_total_first else None
        total, ids = await list_todo_ids(session, owner, page.window(total))
    meta, headers = page_meta("todos.list_todos", page, total, ids)
    return conditional_get(
        {"urls": [todo_url(todo_id) for todo_id in ids], "meta": meta}, headers=headers
    )


@blueprint.post("/")
@document_request(TodoIn)
@document_response(Empty, 201)
async def create_todo_item() -> Response:
    data = await read_body(TodoIn)
    try:
        async with database(current_app).transaction() as session:
            todo_id = await create_todo(session, current_user_id(), data.name, data.task)
    except IntegrityError:
        # Only the owner's foreign key can fail: a valid token of a user deleted since.
        raise unauthorized("the user of these credentials no longer exists") from None
    return json_response({}, 201, {"Location": todo_url(todo_id)})


@blueprint.get(f"/{TODO_ID}")
@document_response(TodoOut)
async def get_todo_item(todo_id: int) -> Response:
    owner = current_user_id()
    async with counting_view(owner, todo_id):
        async with database(current_app).connection() as session:
            todo = await get_todo(session, owner, todo_id)
        if todo is None:
            raise _not_found(todo_id)
        return conditional_get(represent(todo), todo.version)


async def _expected_versions(session: AsyncSession, todo_id: int) -> Versions:
    """The versions the write may replace: If-Match's, then If-None-Match checked (RFC 9110
    13.2.2) against the current todo, whose version the write then compare-and-sets."""
    versions = if_match_versions()
    if "If-None-Match" in request.headers:
        current = await get_todo(session, current_user_id(), todo_id)
        if current is None:
            raise _not_found(todo_id)
        if if_none_match_blocks(entity_tag(json_body(represent(current)), current.version)):
            raise precondition_failed()
        if versions is None or versions == "*" or current.version in versions:
            versions = [current.version]
        else:
            raise precondition_failed()
    return versions


@blueprint.put(f"/{TODO_ID}")
@document_request(TodoIn)
@document_response(Empty)
async def update_todo_item(todo_id: int) -> Response:
    data = await read_body(TodoIn)
    async with database(current_app).transaction() as session:
        versions = await _expected_versions(session, todo_id)
        outcome = await update_todo(
            session, current_user_id(), todo_id, data.name, data.task, versions
        )
    if outcome == WriteOutcome.MISSING:
        raise _not_found(todo_id)
    if outcome == WriteOutcome.STALE:
        raise precondition_failed()
    assert isinstance(outcome, TodoRow)
    tag = entity_tag(json_body(represent(outcome)), outcome.version)
    return json_response({}, 200, {"ETag": f'"{tag}"'})


@blueprint.delete(f"/{TODO_ID}")
@document_response(Empty)
async def delete_todo_item(todo_id: int) -> Response:
    async with database(current_app).transaction() as session:
        versions = await _expected_versions(session, todo_id)
        outcome = await delete_todo(session, current_user_id(), todo_id, versions)
    if outcome == WriteOutcome.MISSING:
        raise _not_found(todo_id)
    if outcome == WriteOutcome.STALE:
        raise precondition_failed()
    return json_response({})
