"""The routing rules in process: the id regex is exactly 1..bound, and a redirect Werkzeug could
still raise (a rule with strict slashes, added by someone later) becomes a 404 JSON, never a
redirect built from the request's Host."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from todo_api.app import create_app
from todo_api.routing import decimals_up_to
from todo_common.settings import Settings


@pytest.mark.parametrize("bound", [1, 9, 10, 19, 100, 1234, 5000, 9099, 2**31 - 1, 2**63 - 1])
def test_the_id_regex_matches_exactly_one_to_the_bound(bound: int) -> None:
    pattern = re.compile(decimals_up_to(bound) + r"\Z")
    rng = random.Random(bound)
    numbers = [*range(12_000), bound - 1, bound, bound + 1, 10 * bound]
    numbers += [rng.randrange(1, 10 * bound) for _ in range(2_000)]
    for number in numbers:
        assert bool(pattern.match(str(number))) == (1 <= number <= bound), number
    for spelling in ["01", "+1", "-1", " 1", "1 ", "\uff11", "\u0661", "1e3", ""]:
        assert not pattern.match(spelling), spelling


async def test_a_redirect_that_routing_still_raises_is_a_404_json(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite3"))

    async def view() -> str:
        return "reached"

    app.add_url_rule("/strict/", "strict", view, strict_slashes=True)
    response = await app.test_client().get("/strict", headers={"Host": "evil.example"})

    assert response.status_code == 404
    assert response.content_type == "application/json"
    assert "Location" not in response.headers
