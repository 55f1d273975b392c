"""The app factory's start-up: what starting made is frozen out of the garbage collector's sight
(full collections walk only what requests made: the GET item p99 in `make bench`)."""

from __future__ import annotations

import gc
from pathlib import Path

from todo_api.app import create_app
from todo_common.settings import Settings


async def test_serving_starts_with_the_startup_objects_frozen(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'todo.db'}"))
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        async with app.test_app():
            frozen = gc.get_freeze_count()
            made_at_start = len(gc.get_objects())  # what the collector still walks
    finally:
        gc.unfreeze()  # the test process is not a server
    assert frozen > 10_000  # the modules, the app, the engine: everything alive at start
    assert made_at_start < frozen / 10
