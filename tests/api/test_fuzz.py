"""Fuzzing from the contract: schemathesis against a live `todo-api` and its own /openapi.json.

Every operation gets the spec's examples, coverage cases (boundaries, missing and wrong-typed
values, undocumented methods) and random valid and invalid requests; then random workflows follow
the spec's links (create a todo, then read, replace or delete it). All of schemathesis's checks
run on every response: no 5xx; status, content type, headers and body as documented; invalid input
rejected and valid input accepted; credentials enforced; a deleted todo gone. Two servers on
PostgreSQL: HTTP Basic passwords (the seed's default), and tokens with rate limits and hit counting
on (Redis), so the X-RateLimit-* headers are checked too.

`make test` runs a few derandomized examples; `FUZZ_EXAMPLES=N` (`make fuzz`) runs N per operation
and N workflows per server, with a fresh random seed each run. Any Hypothesis example database
lives in pytest's temporary folder, never in the repository.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.support.databases import ServerPool
from tests.support.servers import ApiServer, get_token

LONG_RUN = int(os.environ.get("FUZZ_EXAMPLES", "0"))
MAX_RESPONSE_SECONDS = 5
SEED = 6  # the number: any fixed seed makes `make test` repeatable


# Hypothesis caches (source constants, Unicode tables) in ./.hypothesis by default, and its pytest
# plugin writes there while collecting, before any fixture runs: keep them out of the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "todo-hypothesis")

# A long run outlasts the suite's per-test timeout.
pytestmark = [pytest.mark.timeout(0)] if LONG_RUN else []


@dataclass(frozen=True)
class FuzzTarget:
    server: ApiServer
    auth: dict[str, Any]  # schemathesis's `[auth]` settings
    examples: int  # random cases per operation, besides the examples and coverage phases
    workflows: int

    def config(self, folder: Path) -> schemathesis.Config:
        generation: dict[str, Any] = {"max-examples": self.examples}
        # max_response_time is the one check off by default: on, with room for a loaded CI box.
        checks = {"max_response_time": MAX_RESPONSE_SECONDS}
        settings: dict[str, Any] = {"generation": generation, "auth": self.auth, "checks": checks}
        if LONG_RUN:
            generation["database"] = str(folder / "hypothesis")
        else:  # derandomized, which rules out an example database
            generation.update(deterministic=True, database="none")
            settings["seed"] = SEED
        return schemathesis.Config.from_dict(settings)


def _password_target(servers: ServerPool) -> FuzzTarget:
    server = servers.get("postgres")
    name, password = server.add_user()
    # Every wrong password costs an Argon2id verification (~0.1 s), and the auth check sends one
    # per successful response, so this server gets fewer random cases than the token one.
    return FuzzTarget(
        server,
        {"openapi": {"basic": {"username": name, "password": password}}},
        examples=LONG_RUN or 3,
        workflows=LONG_RUN or 4,
    )


def _token_target(servers: ServerPool, redis_url: str) -> FuzzTarget:
    server = servers.get(
        "postgres",
        TODO_USE_TOKEN_AUTH="true",
        TODO_USE_RATE_LIMITS="true",
        TODO_REDIS_URL=redis_url,
        TODO_RATE_LIMIT="1000000/1s",  # headers on every answer, but never a 429 mid-run
    )
    name, password = server.add_user()
    token = get_token(server, (name, password))
    schemes = {
        "basic": {"username": name, "password": password},  # only /auth/request-token takes it
        "bearer": {"bearer": token},
        "tokenAsBasic": {"username": token, "password": ""},
    }
    return FuzzTarget(
        server, {"openapi": schemes}, examples=LONG_RUN or 10, workflows=LONG_RUN or 15
    )


@pytest.fixture(params=["password", "token"])
def fuzz_target(request: pytest.FixtureRequest, servers: ServerPool, postgres: str) -> FuzzTarget:
    if request.param == "password":
        return _password_target(servers)
    return _token_target(servers, request.getfixturevalue("redis_url"))


@pytest.fixture
def fuzz_schema(fuzz_target: FuzzTarget, tmp_path: Path) -> OpenApiSchema:
    url = f"{fuzz_target.server.url}/openapi.json"
    return schemathesis.openapi.from_url(url, config=fuzz_target.config(tmp_path))


@pytest.fixture(autouse=True)
def _legacy_node_id(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32 renames subtests through `node._nodeid`, which pytest 9.2 no longer has.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("fuzz_schema")


def _refused_by_the_http_parser(response: Any) -> bool:
    """hypercorn's own answer to bytes that are not an HTTP/1.1 request (say, a generated
    `Content-Length: ; o`): a bare 400 that never reached the app. Every answer of the app is
    JSON with a Content-Type, so nothing of ours can pass for it."""
    headers = {name.lower(): value for name, value in response.headers.items()}
    return (
        response.status_code == 400
        and not response.content
        and "content-type" not in headers
        and headers.get("connection") in (["close"], "close")
    )


@schema.parametrize()
def test_every_operation_keeps_the_contract(case: schemathesis.Case[Any]) -> None:
    response = case.call()
    if _refused_by_the_http_parser(response):
        return  # outside the app's contract (README: "What the HTTP layer answers itself")
    case.validate_response(response)


def test_workflows_keep_the_contract(
    fuzz_schema: OpenApiSchema, fuzz_target: FuzzTarget, tmp_path: Path
) -> None:
    machine = fuzz_schema.as_state_machine()
    settings = hypothesis.settings(
        machine.TestCase.settings,
        max_examples=fuzz_target.workflows,
        derandomize=not LONG_RUN,
        database=DirectoryBasedExampleDatabase(tmp_path / "workflows") if LONG_RUN else None,
    )
    machine.run(settings=settings)
