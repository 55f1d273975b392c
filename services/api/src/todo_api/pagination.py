"""The seed's page/per_page pagination: `meta` links in the body and the same links in `Link`.

The links we emit are keyset cursors as well as page numbers: `next` carries `after=<last id on
this page>` and `prev` carries `before=<first id>`, so following them is an index seek however deep
the page. A bare `page=N` (as in `first`, `last` or a client's own URL) is served by skipping rows
from whichever end is nearer. `after` and `before` together bound a range rather than being refused:
OpenAPI cannot say "not both", and every query the spec allows must be served. Page numbers in
cursor links are what the client was told; if todos are added or deleted meanwhile, the cursor
stays exact and the number may drift by the difference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from todo_api.errors import APIError
from todo_api.schemas import ID_MAX, PAGE_MAX, PageMeta
from todo_api.store import Window
from todo_common.settings import Settings

_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class Page:
    number: int
    size: int
    after: int | None = None  # cursor: the todos after this id
    before: int | None = None  # cursor: the todos before this id

    @property
    def needs_total_first(self) -> bool:
        """A bare page past the first: which end to skip from depends on the total."""
        return self.after is None and self.before is None and self.number > 1

    def window(self, total: int | None = None) -> Window:
        if self.after is not None or self.before is not None:
            # Both together bound a range: the page just before `before`, none at or below `after`.
            return Window(limit=self.size, after=self.after, before=self.before)
        skip = (self.number - 1) * self.size
        if total is not None:
            beyond = total - self.number * self.size  # todos after this page
            if beyond < skip:  # nearer the end: skip from there
                return Window(
                    limit=max(self.size + min(beyond, 0), 0), skip=max(beyond, 0), from_end=True
                )
        return Window(limit=self.size, skip=skip)


def _positive_int(
    query: Mapping[str, str], name: str, default: int | None, largest: int
) -> int | None:
    raw = query.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= largest:
        raise APIError(400, f"{name} must be a positive integer, got {raw!r}")
    return int(raw)


def requested_page(settings: Settings, query: Mapping[str, str]) -> Page:
    """Page, per_page (capped at TODO_PER_PAGE_MAX) and a cursor from the query (the first value
    of each parameter, as the request's query string gives it)."""
    number = _positive_int(query, "page", 1, PAGE_MAX)
    size = _positive_int(query, "per_page", settings.per_page_default, PAGE_MAX)
    after = _positive_int(query, "after", None, ID_MAX)
    before = _positive_int(query, "before", None, ID_MAX)
    assert number is not None and size is not None
    return Page(number, min(size, settings.per_page_max), after, before)


def page_meta(
    collection_url: str, page: Page, total: int, ids: list[int]
) -> tuple[PageMeta, dict[str, str]]:
    """The seed's `meta` object and a matching `Link` header; `ids` are the page's todos, and
    `collection_url` the list's absolute URL (see `todo_api.representation.todo_url_prefix`):
    links are built on it as `url_for` would build them, at a fraction of its cost."""
    pages = -(-total // page.size)

    def link(number: int, **cursor: int) -> str:
        query = "&".join(f"{name}={value}" for name, value in cursor.items())
        return f"{collection_url}?page={number}&per_page={page.size}{'&' if query else ''}{query}"

    last = max(pages, 1)
    previous = None
    if page.number > 1:
        previous = link(page.number - 1, before=ids[0]) if ids else link(min(page.number - 1, last))
    meta = PageMeta(
        page=page.number,
        pages=pages,
        per_page=page.size,
        total=total,
        prev=previous,
        next=link(page.number + 1, after=ids[-1]) if ids and page.number < pages else None,
        first=link(1),
        last=link(last),
    )
    targets = {"next": meta.next, "prev": meta.prev, "first": meta.first, "last": meta.last}
    links = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in targets.items() if url)
    return meta, {"Link": links}
