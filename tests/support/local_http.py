"""httpx clients for the tests, all sharing one TLS context.

httpx builds a new SSL context for every client it makes, loading the system's CA store: about
27 ms of CPU, even for a client that only ever speaks plain HTTP to a local server. The suite
makes thousands of clients (each readiness poll of `httpx.get` is one), which cost minutes of CPU
per `make test` on two cores. These are httpx's own clients with `verify` set to one context made
at import: use them, not `httpx.get`, `httpx.Client` or `httpx.AsyncClient`, anywhere in tests/
(`make lint` refuses httpx's one-call functions, `httpx.get` and the like).
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx

TLS_CONTEXT = ssl.create_default_context()
DEFAULT_TIMEOUT = 5.0  # httpx's own default


def client(**kwargs: Any) -> httpx.Client:
    """`httpx.Client(**kwargs)`."""
    return httpx.Client(verify=TLS_CONTEXT, **kwargs)


def async_client(**kwargs: Any) -> httpx.AsyncClient:
    """`httpx.AsyncClient(**kwargs)`."""
    return httpx.AsyncClient(verify=TLS_CONTEXT, **kwargs)


def get(url: str, *, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> httpx.Response:
    """`httpx.get(url, ...)`: one request on a client of its own."""
    with client(timeout=timeout) as http:
        return http.get(url, **kwargs)
