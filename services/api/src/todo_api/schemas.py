"""Request and response shapes: they validate bodies and document the API in /openapi.json."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator
from pydantic.json_schema import SkipJsonSchema

from todo_common.models import NAME_MAX, TASK_MAX

# What `_no_nul` enforces, as the spec says it (PostgreSQL text cannot hold NUL).
NO_NUL: dict[str, Any] = {"pattern": "^[^\\u0000]*$"}


class TodoIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @field_validator("name", "task")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain the NUL character")
        return value

    name: Annotated[
        StrictStr,
        Field(min_length=1, max_length=NAME_MAX, examples=["buy"], json_schema_extra=NO_NUL),
    ]
    task: Annotated[
        StrictStr,
        Field(
            min_length=1, max_length=TASK_MAX, examples=["buy groceries"], json_schema_extra=NO_NUL
        ),
    ]


class TodoOut(BaseModel):
    url: str
    name: str
    task: str
    timestamp: str = Field(description="creation time, HTTP-date in UTC")


class PageMeta(BaseModel):
    page: int
    pages: int
    per_page: int
    total: int
    prev: str | None
    next: str | None
    first: str
    last: str


class TodoPage(BaseModel):
    urls: list[str]
    meta: PageMeta


# The bounds `todo_api.pagination` enforces (a 400 beyond them).
PAGE_MAX = 10**9
ID_MAX = 2**63 - 1


def _without_null_defaults(schema: dict[str, Any]) -> None:
    for field in schema.get("properties", {}).values():
        if "default" in field and field["default"] is None:
            del field["default"]


# SkipJsonSchema keeps `null`, which no query string can carry, out of the documented types.
PageNumber = Annotated[int, Field(ge=1, le=PAGE_MAX)] | SkipJsonSchema[None]
Cursor = Annotated[int, Field(ge=1, le=ID_MAX)] | SkipJsonSchema[None]


class PageQuery(BaseModel):
    """Documentation only: `todo_api.pagination` parses the query."""

    model_config = ConfigDict(json_schema_extra=_without_null_defaults)

    page: PageNumber = None
    per_page: PageNumber = Field(default=None, description="capped at TODO_PER_PAGE_MAX")
    after: Cursor = Field(default=None, description="cursor: only todos after this id")
    before: Cursor = Field(
        default=None, description="cursor: the page of todos just before this id"
    )


class Empty(BaseModel):
    pass


class TokenOut(BaseModel):
    token: str
    expires_in: int = Field(description="seconds until the token expires")


class ViewedTodo(BaseModel):
    url: str
    hits: int


class StatsOut(BaseModel):
    todos: int = Field(description="how many todos the caller has")
    hits: int = Field(description="views of the caller's todos, as of the last flush")
    most_viewed: list[ViewedTodo] = Field(description="the caller's most viewed todos, up to 5")


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer: the seed's keys plus RFC 9457's (see `todo_api.errors`)."""

    status: int = Field(ge=400, le=599, description="the HTTP status code")
    error: str = Field(description="the reason phrase, lower case")
    message: str = Field(description="what went wrong, for a human")
    type: str = Field(description="RFC 9457 problem type; always about:blank")
    title: str = Field(description="RFC 9457: the reason phrase")
    detail: str = Field(description="RFC 9457: the same as message")


class Health(BaseModel):
    status: str
