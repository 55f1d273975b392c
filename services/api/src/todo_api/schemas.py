"""Request and response shapes: they validate bodies and document the API in /openapi.json."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from todo_common.models import NAME_MAX, TASK_MAX


class TodoIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @field_validator("name", "task")
    @classmethod
    def _no_nul(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain the NUL character")
        return value

    name: Annotated[StrictStr, Field(min_length=1, max_length=NAME_MAX, examples=["buy"])]
    task: Annotated[StrictStr, Field(min_length=1, max_length=TASK_MAX, examples=["buy groceries"])]


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


class PageQuery(BaseModel):
    page: int | None = Field(default=None, ge=1)
    per_page: int | None = Field(default=None, ge=1)
    after: int | None = Field(default=None, ge=1, description="cursor: todos after this id")
    before: int | None = Field(default=None, ge=1, description="cursor: todos before this id")


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


class Problem(BaseModel):
    """Every error: the seed's keys plus RFC 9457's."""

    status: int
    error: str
    message: str
    type: str = "about:blank"
    title: str
    detail: str


class Health(BaseModel):
    status: str
