"""Reading JSON request bodies into validated models, with errors a client can act on."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from quart import request

from todo_api.errors import APIError

ModelT = TypeVar("ModelT", bound=BaseModel)

# What a route that reads a body can answer because of it: bad JSON or fields, too large
# (Quart, MAX_CONTENT_LENGTH), not JSON. Such routes declare these with `responds_with`.
BODY_ERRORS = (400, 413, 415)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


async def read_body(model: type[ModelT]) -> ModelT:
    """Parse the JSON body as `model`: 415 for other media types, 400 for bad JSON or fields.

    A missing Content-Type is read as JSON (the seed's clients sometimes omit it). Oversized
    bodies never get here: Quart answers 413 while reading them (MAX_CONTENT_LENGTH).
    """
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise APIError(415, f"the body must be application/json, not {mimetype}")
    raw = await request.get_data(as_text=False)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise APIError(400, f"the body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise APIError(400, "the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise APIError(400, _describe(error)) from None
