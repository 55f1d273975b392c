"""A todo as the API sends it: its URL, its timestamp as an HTTP-date, its JSON body.

Framework-neutral, for the fast route and the Quart blueprints alike. A todo's URL is built from a
prefix (scheme, host and root path of the request, then the collection's path) instead of
`url_for`: it is on the hot path, and the prefix is exactly what Quart's external `url_for`
builds for these routes (host as werkzeug validates and lower-cases it, default port dropped).
"""

from __future__ import annotations

from datetime import UTC, datetime

from werkzeug.sansio.utils import get_host

from todo_api.conditional import to_json
from todo_api.schemas import TodoOut
from todo_api.store import TodoRow

TODOS_PATH = "/api/v1.0/todos/"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def todo_url_prefix(
    scheme: str, host_header: str | None, server: tuple[str, int | None] | None, root_path: str
) -> str:
    """Everything of a todo's absolute URL before its id."""
    scheme = "https" if scheme in ("https", "wss") else "http"
    # Quart fills in an empty Host for HTTP/1.0 requests without one: the server's address then.
    host = (
        get_host(scheme, host_header or None, server).lower().removesuffix(_DEFAULT_PORTS[scheme])
    )
    return f"{scheme}://{host}{root_path.rstrip('/')}{TODOS_PATH}"


def http_date(moment: datetime) -> str:
    """`moment` as an HTTP-date (RFC 9110 5.6.7), as `email.utils.format_datetime(usegmt=True)`
    writes it, at half its cost: the timestamp is on the hot path (GET of a todo), and this
    pays for building the body through its model. Day and month names are not the locale's."""
    t = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    # %-formatting: measured faster than an f-string with format specs here.
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (  # noqa: UP031
        _DAYS[t.weekday()],
        t.day,
        _MONTHS[t.month - 1],
        t.year,
        t.hour,
        t.minute,
        t.second,
    )


def todo_body(todo: TodoRow, url_prefix: str) -> bytes:
    # Plain construction: pydantic's model_construct measured slower for four strings.
    return to_json(
        TodoOut(
            url=f"{url_prefix}{todo.id}",
            name=todo.name,
            task=todo.task,
            timestamp=http_date(todo.created_at),
        )
    )
