"""The seed's page/per_page pagination: `meta` links in the body and the same links in `Link`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from quart import request, url_for

from todo_api.errors import APIError
from todo_common.settings import Settings

_DIGITS = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Page:
    number: int
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def _positive_int(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or int(raw) < 1:
        raise APIError(400, f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def requested_page(settings: Settings) -> Page:
    """Page and per_page from the query; per_page is capped at TODO_PER_PAGE_MAX."""
    number = _positive_int("page", 1)
    size = min(_positive_int("per_page", settings.per_page_default), settings.per_page_max)
    return Page(number, size)


def page_meta(endpoint: str, page: Page, total: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The seed's `meta` object and a matching `Link` header."""
    pages = -(-total // page.size)

    def link(number: int) -> str:
        return url_for(endpoint, page=number, per_page=page.size, _external=True)

    last = max(pages, 1)
    meta = {
        "page": page.number,
        "pages": pages,
        "per_page": page.size,
        "total": total,
        "prev": link(min(page.number - 1, last)) if page.number > 1 else None,
        "next": link(page.number + 1) if page.number < pages else None,
        "first": link(1),
        "last": link(last),
    }
    relations = ("next", "prev", "first", "last")
    links = ", ".join(f'<{meta[rel]}>; rel="{rel}"' for rel in relations if meta[rel])
    return meta, {"Link": links}
