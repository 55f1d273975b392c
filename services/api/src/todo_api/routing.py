"""URL routing of our own: todo ids are canonical ASCII decimals, and routing never redirects.

Werkzeug's `int` converter matches `\\d+`, which takes non-ASCII digits (fullwidth, Arabic-Indic)
and leading zeros, so one todo had many URLs. Its URL map also answers `//` in a path with an
HTML 308 whose Location is built from the request's Host header, before any authentication.
"""

from __future__ import annotations

from typing import NoReturn

from quart import Quart
from quart.wrappers import BaseRequestWebsocket
from werkzeug.exceptions import NotFound
from werkzeug.routing import Map, RequestRedirect
from werkzeug.routing.converters import IntegerConverter

from todo_api.schemas import ID_MAX


def decimals_up_to(bound: int) -> str:
    """A regex for the decimals 1..`bound` as we write them: ASCII digits, no leading zero."""
    digits = str(bound)
    alternatives = [digits]
    if len(digits) > 1:
        alternatives.append(f"[1-9][0-9]{{0,{len(digits) - 2}}}")  # fewer digits
    for position, digit in enumerate(digits):  # as many digits, smaller at `position`
        lowest = 1 if position == 0 else 0
        if int(digit) > lowest:
            rest = len(digits) - position - 1
            tail = f"[0-9]{{{rest}}}" if rest else ""
            alternatives.append(f"{digits[:position]}[{lowest}-{int(digit) - 1}]{tail}")
    return "(?:" + "|".join(alternatives) + ")"


class IdConverter(IntegerConverter):
    """A row id, 1..`max`, spelled the one way we emit it. A subclass of `int`'s converter, so the
    OpenAPI document describes it as a bounded integer.

    The bound is in the regex, not checked in `to_python`: Werkzeug answers a conversion failure
    on a path that other methods' rules match with 405, where an impossible id must be a 404.
    The regex also keeps int() away from huge strings.
    """

    def __init__(self, map: Map, max: int = ID_MAX) -> None:
        super().__init__(map, min=1, max=max)
        self.regex = decimals_up_to(max)


def _raise_without_redirects(request: BaseRequestWebsocket) -> NoReturn:
    # Quart hands routing redirects straight to the client, past our JSON error handlers.
    error = request.routing_exception
    if isinstance(error, RequestRedirect):
        raise NotFound()
    assert error is not None
    raise error


def init_app(app: Quart) -> None:
    """Register the `id` converter and turn off every redirect Werkzeug's map can make; call
    before any route is added (rules read these settings when they are bound)."""
    app.url_map.converters["id"] = IdConverter
    app.url_map.merge_slashes = False
    app.url_map.redirect_defaults = False
    app.raise_routing_exception = _raise_without_redirects  # type: ignore[method-assign]
