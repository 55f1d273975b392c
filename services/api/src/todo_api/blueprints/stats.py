"""`/api/v1.0/stats`: the caller's totals and most viewed todos.

Hits reach the database with the worker's flush (every TODO_FLUSH_INTERVAL seconds), so the figures
trail live views by at most about one interval.
"""

from __future__ import annotations

from quart import Blueprint, Response, current_app
from quart_schema import document_response

from todo_api.access import current_user_id, require_user
from todo_api.blueprints.todos import todo_url
from todo_api.conditional import conditional_get
from todo_api.resources import database
from todo_api.schemas import StatsOut
from todo_api.store import read_stats

blueprint = Blueprint("stats", __name__, url_prefix="/api/v1.0/stats")
blueprint.before_request(require_user)

MOST_VIEWED = 5


@blueprint.get("")
@document_response(StatsOut)
async def get_stats() -> Response:
    async with database(current_app).connection() as session:
        stats = await read_stats(session, current_user_id(), MOST_VIEWED)
    return conditional_get(
        {
            "todos": stats.todos,
            "hits": stats.hits,
            "most_viewed": [
                {"url": todo_url(todo_id), "hits": hits} for todo_id, hits in stats.most_viewed
            ],
        }
    )
