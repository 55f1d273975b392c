"""What a todo's representation is made of, in process: the model that documents it is the one
that serializes it, and the fast HTTP-date writes exactly what the standard library writes."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import orjson

from todo_api.conditional import to_json
from todo_api.representation import http_date
from todo_api.schemas import PageMeta, StatsOut, TodoOut, TodoPage, TokenOut, ViewedTodo


def test_http_date_matches_the_standard_library() -> None:
    rng = random.Random(11)
    moments = [datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)]
    moments += [datetime.fromtimestamp(rng.uniform(0, 2**33), UTC) for _ in range(20_000)]
    for moment in moments:
        assert http_date(moment) == format_datetime(moment, usegmt=True), moment


def test_http_date_converts_other_zones_to_gmt() -> None:
    moment = datetime(2024, 2, 29, 23, 30, tzinfo=timezone(timedelta(hours=-2)))

    assert http_date(moment) == "Fri, 01 Mar 2024 01:30:00 GMT"


def test_each_body_has_exactly_its_documented_properties() -> None:
    meta = PageMeta(
        page=1, pages=1, per_page=10, total=1, prev=None, next=None, first="f", last="l"
    )
    bodies = [
        TodoOut(url="u", name="n", task="t", timestamp=http_date(datetime.now(UTC))),
        TodoPage(urls=["u"], meta=meta),
        StatsOut(todos=1, hits=2, most_viewed=[ViewedTodo(url="u", hits=2)]),
        TokenOut(token="x", expires_in=60),
    ]
    for model in bodies:
        sent = orjson.loads(to_json(model))
        documented = type(model).model_json_schema()
        assert set(sent) == set(documented["properties"]) == set(documented["required"])
    assert orjson.loads(to_json(bodies[1]))["meta"] == meta.model_dump()
