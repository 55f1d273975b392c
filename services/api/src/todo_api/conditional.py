"""Strong ETags and HTTP conditional requests (RFC 9110 section 13).

A todo's tag is `"<version>-<digest of its JSON>"`: the digest makes it a true strong validator of
the bytes sent, and the version lets PUT/DELETE turn `If-Match` into an atomic compare-and-set in
SQL (`... WHERE version IN (...)`) rather than a read-then-write. Collections get a digest only.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson
from quart import Response, request

from todo_api.errors import APIError

ANY: Literal["*"] = "*"


def entity_tag(body: bytes, version: int | None = None) -> str:
    digest = hashlib.blake2b(body, digest_size=8).hexdigest()
    return digest if version is None else f"{version}-{digest}"


def json_body(payload: Any) -> bytes:
    return orjson.dumps(payload)


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json_body(payload), status=status, headers=headers, content_type="application/json"
    )


def precondition_failed() -> APIError:
    return APIError(412, "the resource has changed: its ETag no longer matches If-Match")


def conditional_get(
    payload: Any, version: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    """200 with a strong ETag, or 304 when If-None-Match matches; 412 when If-Match fails."""
    body = json_body(payload)
    tag = entity_tag(body, version)
    if_match = request.if_match
    if if_match and not (if_match.star_tag or if_match.contains(tag)):
        raise precondition_failed()
    if_none_match = request.if_none_match
    if if_none_match and (if_none_match.star_tag or if_none_match.contains_weak(tag)):
        response = Response(b"", status=304, headers=headers)
    else:
        response = Response(body, status=200, headers=headers, content_type="application/json")
    response.set_etag(tag)
    return response


def if_match_versions() -> list[int] | Literal["*"] | None:
    """The versions If-Match accepts: None without the header, ANY for `*`.

    Weak tags never match (strong comparison); tags we did not mint parse to nothing, so they
    fail the compare-and-set.
    """
    if "If-Match" not in request.headers:
        return None
    if_match = request.if_match
    if if_match.star_tag:
        return ANY
    versions = []
    for tag in if_match.as_set():
        version, dash, _digest = tag.partition("-")
        if dash and version.isdigit() and len(version) < 10:
            versions.append(int(version))
    return versions


def if_none_match_blocks(tag: str) -> bool:
    """True when a write must not proceed because If-None-Match matches the current tag."""
    if_none_match = request.if_none_match
    return bool(if_none_match) and (if_none_match.star_tag or if_none_match.contains_weak(tag))
