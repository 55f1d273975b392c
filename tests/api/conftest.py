"""Servers for the API tests: real `todo-api` processes on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.databases import ServerPool
from tests.support.servers import ApiServer


@pytest.fixture
def api(servers: ServerPool, backend: str) -> ApiServer:
    """Password (HTTP Basic) authentication, no rate limits: the seed's default."""
    return servers.get(backend)


@pytest.fixture
def token_api(servers: ServerPool, backend: str) -> ApiServer:
    return servers.get(backend, TODO_USE_TOKEN_AUTH="true")


@pytest.fixture
def limited_api(servers: ServerPool, backend: str, redis_url: str) -> ApiServer:
    """Rate limits on, behind one trusted proxy so tests can pose as distinct clients."""
    return servers.get(
        backend,
        TODO_USE_RATE_LIMITS="true",
        TODO_REDIS_URL=redis_url,
        TODO_RATE_LIMIT="5/15s",
        TODO_TRUSTED_PROXIES="1",
    )


@pytest.fixture
def client(api: ApiServer) -> Iterator[httpx.Client]:
    """A client logged in as a new user of `api`."""
    with api.client(auth=api.add_user()) as http:
        yield http
