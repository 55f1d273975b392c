"""`/api/v1.0/todos/`: the seed's todo collection, scoped to the authenticated user."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from quart import Blueprint, Response, current_app, request
from quart_schema import document_querystring, document_request, document_response

from todo_api.access import current_principal, require_user
from todo_api.bodies import BODY_ERRORS, read_body
from todo_api.conditional import (
    if_match_versions,
    if_none_match_blocks,
    json_response,
    precondition_failed,
    todo_tag,
)
from todo_api.hits import hit_counter
from todo_api.item import read_todo_item
from todo_api.listing import read_todo_page
from todo_api.observability import request_id_in
from todo_api.openapi import GATE_ERRORS, blueprint_responds_with, responds_with
from todo_api.replies import as_response
from todo_api.representation import todo_url_prefix
from todo_api.resources import database, settings_of
from todo_api.schemas import ID_MAX, Empty, PageQuery, TodoIn, TodoOut, TodoPage
from todo_api.store import Store, Versions
from todo_common.exceptions import TodoNotFound

blueprint = Blueprint("todos", __name__, url_prefix="/api/v1.0/todos")
blueprint.before_request(require_user)
blueprint_responds_with(blueprint, *GATE_ERRORS)

# ASCII digits, 1..2^63-1 (see todo_api.routing); routing answers 404 for anything else.
TODO_ID = f"<id(max={ID_MAX}):todo_id>"


def url_prefix() -> str:
    """The prefix of this request's todo URLs (see todo_api.representation)."""
    return todo_url_prefix(
        request.scheme, request.headers.get("Host"), request.server, request.root_path
    )


def todo_url(todo_id: int) -> str:
    return f"{url_prefix()}{todo_id}"


def todo_store() -> AbstractAsyncContextManager[Store]:
    """The store, for this request's statements (a revoked caller's `CredentialsRevoked` is
    answered 401 by the app's error handlers)."""
    return database(current_app).store()


@blueprint.get("/")
@document_querystring(PageQuery)
@document_response(TodoPage)
@responds_with(304, 400, 412)
async def list_todos() -> Response:
    # The fast route (todo_api.hot) answers most of these; both call read_todo_page.
    reply = await read_todo_page(
        database(current_app),
        principal=current_principal(),
        settings=settings_of(current_app),
        query=request.args,
        url_prefix=url_prefix(),
        if_match=request.headers.get("If-Match"),
        if_none_match=request.headers.get("If-None-Match"),
    )
    return as_response(reply)


@blueprint.post("/")
@document_request(TodoIn)
@document_response(Empty, 201)
@responds_with(*BODY_ERRORS)
async def create_todo_item() -> Response:
    data = await read_body(TodoIn)
    caller = current_principal()
    async with todo_store() as store:
        todo_id = await store.create_todo(
            owner_id=caller.user_id,
            password_version=caller.password_version,
            name=data.name,
            task=data.task,
        )
    return json_response(Empty(), 201, {"Location": todo_url(todo_id)})


@blueprint.get(f"/{TODO_ID}")
@document_response(TodoOut)
@responds_with(304, 404, 412)
async def get_todo_item(todo_id: int) -> Response:
    # The fast route (todo_api.hot) answers most of these; both call read_todo_item.
    reply = await read_todo_item(
        database(current_app),
        principal=current_principal(),
        todo_id=todo_id,
        url_prefix=url_prefix(),
        if_match=request.headers.get("If-Match"),
        if_none_match=request.headers.get("If-None-Match"),
        hits=hit_counter(current_app) if request.method == "GET" else None,
        request_id=request_id_in(request.scope),
    )
    return as_response(reply)


async def _expected_versions(store: Store, todo_id: int) -> Versions:
    """The versions the write may replace: If-Match's, then If-None-Match checked (RFC 9110
    13.2.2) against the current todo, whose version the write then compare-and-sets (so no
    transaction is needed between this read and the write)."""
    versions = if_match_versions(todo_id)
    if "If-None-Match" in request.headers:
        caller = current_principal()
        current = await store.get_todo(
            owner_id=caller.user_id, password_version=caller.password_version, todo_id=todo_id
        )
        if current is None:
            raise TodoNotFound(todo_id)
        if if_none_match_blocks(todo_tag(current.id, current.version)):
            raise precondition_failed()
        if versions is None or versions == "*" or current.version in versions:
            versions = [current.version]
        else:
            raise precondition_failed()
    return versions


@blueprint.put(f"/{TODO_ID}")
@document_request(TodoIn)
@document_response(Empty)
@responds_with(*BODY_ERRORS, 404, 412)
async def update_todo_item(todo_id: int) -> Response:
    data = await read_body(TodoIn)
    caller = current_principal()
    async with todo_store() as store:
        versions = await _expected_versions(store, todo_id)
        todo = await store.update_todo(
            owner_id=caller.user_id,
            password_version=caller.password_version,
            todo_id=todo_id,
            name=data.name,
            task=data.task,
            versions=versions,
        )
    return json_response(Empty(), 200, {"ETag": f'"{todo_tag(todo.id, todo.version)}"'})


@blueprint.delete(f"/{TODO_ID}")
@document_response(Empty)
@responds_with(404, 412)
async def delete_todo_item(todo_id: int) -> Response:
    caller = current_principal()
    async with todo_store() as store:
        versions = await _expected_versions(store, todo_id)
        await store.delete_todo(
            owner_id=caller.user_id,
            password_version=caller.password_version,
            todo_id=todo_id,
            versions=versions,
        )
    return json_response(Empty())
