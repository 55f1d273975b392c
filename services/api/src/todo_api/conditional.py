"""Strong ETags, HTTP conditional requests (RFC 9110 section 13) and JSON bodies from models.

A todo's tag is `"<version>-<digest of (todo id, version)>"`. It is a strong validator (RFC 9110
8.8.1: it changes whenever the representation's data would change in a 200) because the pair
determines every byte of the representation sent for a given target URI:

- `name` and `task` change only through `store.update_todo`, which bumps `version` in the same
  UPDATE statement (every write bumps it, even one that writes the same text back);
- `timestamp` is the creation time, never written after the INSERT;
- `url` comes from the id and the request's own scheme and host, which are part of the target URI
  a cache keys on, so representations for different hosts are different resources;
- ids are never reused, so a new todo at a deleted todo's URL cannot mint the old tag: PostgreSQL
  takes them from a BIGSERIAL sequence, and SQLite's table is `AUTOINCREMENT` (migration 0001),
  which never hands out an id again, even after the highest row is deleted;
- `_TAG_FORMAT` is part of the digest: bump it when the representation's shape changes, so tags
  handed out by an older release stop matching.

Because the tag is computable from (id, version), `If-Match` needs no read: the tags it lists are
compared whole, in memory, with the tag the target todo would have at each version they name, and
only the versions whose tag matches exactly go into the write's atomic compare-and-set
(`... WHERE id = :id AND version IN (...)`). A made-up digest, a weak tag, or another todo's tag of
the same version therefore never matches. Collections and stats have no version: their tag is a
digest of the body, which is strong by construction.

`If-None-Match` uses the weak comparison, as RFC 9110 13.1.2 says; a list holding `*` (as the
seed's clients send: `"tag", *`) counts as `*`. In `If-Match` such a list is refused as a tag we
never minted, so a malformed header cannot switch the lost-update check off.

Bodies are serialized by the response model itself (pydantic's compiled serializer), so what
/openapi.json documents and what is sent cannot drift apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel
from quart import Response, request
from werkzeug.datastructures import ETags
from werkzeug.http import parse_etags

from todo_api.errors import PRECONDITION_FAILED_MESSAGE, APIError
from todo_api.replies import JSON, Reply, as_response, json_reply

ANY: Literal["*"] = "*"
# Part of every todo tag: a new value invalidates all tags minted before (see the docstring).
_TAG_FORMAT = b"todo-repr-v1"
# `todos.version` is a 32-bit INTEGER: longer numbers cannot be versions of ours.
_VERSION_DIGITS = 9


def todo_tag(todo_id: int, version: int) -> str:
    """The strong ETag (without quotes) of a todo's representation at `version`."""
    digest = hashlib.blake2b(
        b"%d:%d" % (todo_id, version), digest_size=8, person=_TAG_FORMAT
    ).hexdigest()
    return f"{version}-{digest}"


def body_tag(body: bytes) -> str:
    """The strong ETag (without quotes) of a representation without a version: its digest."""
    return hashlib.blake2b(body, digest_size=8).hexdigest()


def to_json(model: BaseModel) -> bytes:
    return model.__pydantic_serializer__.to_json(model)


def json_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(to_json(model), status=status, headers=headers, content_type=JSON)


def precondition_failed() -> APIError:
    return APIError(412, PRECONDITION_FAILED_MESSAGE)


def _any_or_weakly_contains(etags: ETags, tag: str) -> bool:
    """If-None-Match's test: `*`, alone or in a list, or the tag by weak comparison."""
    return etags.star_tag or etags.contains_weak(tag) or ANY in etags.as_set()


def conditional_reply(
    tag: str,
    body: Callable[[], bytes],
    *,
    if_match: str | None,
    if_none_match: str | None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """200 with the strong ETag `tag` and `body()`, or a 304 when If-None-Match matches (the tag,
    no body and none of the body's headers: RFC 9110 15.4.5); 412 when If-Match fails. The body
    is only built for a 200. Header values are as the request sent them (None: absent)."""
    if if_match:
        etags = parse_etags(if_match)
        if etags and not (etags.star_tag or etags.contains(tag)):
            raise precondition_failed()
    quoted = f'"{tag}"'
    if if_none_match:
        etags = parse_etags(if_none_match)
        if etags and _any_or_weakly_contains(etags, tag):
            return Reply(304, {**headers, "ETag": quoted} if headers else {"ETag": quoted})
    return json_reply(body(), 200, {**headers, "ETag": quoted} if headers else {"ETag": quoted})


def conditional_get(
    model: BaseModel, tag: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """`conditional_reply` for a Quart handler. `tag` is the todo's (see `todo_tag`); without it
    the tag is the body's digest."""
    if tag is None:
        encoded = to_json(model)
        tag = body_tag(encoded)
        body: Callable[[], bytes] = lambda: encoded  # noqa: E731
    else:
        body = lambda: to_json(model)  # noqa: E731
    reply = conditional_reply(
        tag,
        body,
        if_match=request.headers.get("If-Match"),
        if_none_match=request.headers.get("If-None-Match"),
        headers=headers,
    )
    return as_response(reply)


def if_match_versions(todo_id: int) -> list[int] | Literal["*"] | None:
    """The versions of todo `todo_id` that If-Match accepts: None without the header, ANY for
    `*`, else those whose whole tag is listed (strong comparison: weak tags never match)."""
    if "If-Match" not in request.headers:
        return None
    if_match = request.if_match
    if if_match.star_tag:
        return ANY
    versions = []
    for tag in if_match.as_set():
        version, dash, _digest = tag.partition("-")
        if not (dash and version.isascii() and version.isdigit()):
            continue
        if len(version) <= _VERSION_DIGITS and todo_tag(todo_id, int(version)) == tag:
            versions.append(int(version))
    return versions


def if_none_match_blocks(tag: str) -> bool:
    """True when a write must not proceed because If-None-Match matches the current tag."""
    if_none_match = request.if_none_match
    return bool(if_none_match) and _any_or_weakly_contains(if_none_match, tag)
