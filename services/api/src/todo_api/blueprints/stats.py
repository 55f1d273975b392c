"""`/api/v1.0/stats`: the caller's totals and most viewed todos.

Hits reach the database with the worker's flush (every TODO_FLUSH_INTERVAL seconds), so the figures
trail live views by at most about one interval.
"""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_response

from todo_api.access import current_principal, require_user
from todo_api.blueprints.todos import todo_store, todo_url
from todo_api.conditional import conditional_get
from todo_api.openapi import GATE_ERRORS, blueprint_responds_with, responds_with
from todo_api.schemas import StatsOut, ViewedTodo

blueprint = Blueprint("stats", __name__, url_prefix="/api/v1.0/stats")
blueprint.before_request(require_user)
blueprint_responds_with(blueprint, *GATE_ERRORS)

MOST_VIEWED = 5


@blueprint.get("")
@document_response(StatsOut)
@responds_with(304, 412)
async def get_stats() -> Response:
    caller = current_principal()
    async with todo_store() as store:
        stats = await store.read_stats(
            owner_id=caller.user_id, password_version=caller.password_version, top=MOST_VIEWED
        )
    return conditional_get(
        StatsOut(
            todos=stats.todos,
            hits=stats.hits,
            most_viewed=[
                ViewedTodo(url=todo_url(todo_id), hits=hits) for todo_id, hits in stats.most_viewed
            ],
        )
    )
