"""The client's address, scheme and host as a trusted proxy reports them in X-Forwarded-*.

With TODO_TRUSTED_PROXIES=N, the N-th value from the right of each header is the one the
outermost trusted proxy wrote (as hypercorn's ProxyFixMiddleware in "legacy" mode takes it), and
values left of it are the client's to invent. Unlike that middleware, a value is used only when it
is what it claims to be: the address goes into rate-limit keys and every access-log line, the
scheme and host into every absolute URL we emit. So X-Forwarded-For must be an IP address (stored
normalized: one client, one key), X-Forwarded-Proto http or https, and X-Forwarded-Host a host
name or address with an optional port; anything else is ignored and the peer's own value kept.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Iterable

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(
    rf"(?P<name>{_LABEL}(?:\.{_LABEL})*|\[(?P<ipv6>[0-9A-Fa-f:.]+)\])(?::(?P<port>[0-9]{{1,5}}))?"
)
_MAX_HOST_NAME = 253


def trusted_value(name: bytes, headers: Iterable[tuple[bytes, bytes]], hops: int) -> str | None:
    """The value of header `name` that the outermost of `hops` trusted proxies wrote, if any."""
    values = [
        part.decode("latin-1").strip()
        for header, value in headers
        if header.lower() == name
        for part in value.split(b",")
    ]
    return values[-hops] if hops and len(values) >= hops else None


def client_address(value: str) -> str | None:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:  # "fe80::1%anything" is text of the client's choosing
            return None
        address = address.ipv4_mapped or address
    return str(address)


def scheme(value: str) -> str | None:
    value = value.lower()
    return value if value in ("http", "https") else None


def host(value: str) -> str | None:
    match = _HOST.fullmatch(value)
    if match is None or len(match["name"]) > _MAX_HOST_NAME:
        return None
    if match["port"] is not None and not 0 < int(match["port"]) <= 65535:
        return None
    if match["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(match["ipv6"])
        except ValueError:
            return None
    return value


class ForwardedHeaders:
    """ASGI middleware: the client, scheme and Host of a request as `trusted_hops` proxies in
    front of us report them, where the reported values are sane."""

    def __init__(self, app: ASGIFramework, trusted_hops: int) -> None:
        self.app = app
        self.trusted_hops = trusted_hops

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "http" or scope["type"] == "websocket":
            headers = scope["headers"]
            hops = self.trusted_hops
            forwarded_for = trusted_value(b"x-forwarded-for", headers, hops)
            forwarded_proto = trusted_value(b"x-forwarded-proto", headers, hops)
            forwarded_host = trusted_value(b"x-forwarded-host", headers, hops)
            address = client_address(forwarded_for) if forwarded_for is not None else None
            proto = scheme(forwarded_proto) if forwarded_proto is not None else None
            new_host = host(forwarded_host) if forwarded_host is not None else None
            if address is not None or proto is not None or new_host is not None:
                scope = copy.copy(scope)
                if address is not None:
                    scope["client"] = (address, 0)
                if proto is not None:
                    scope["scheme"] = proto
                if new_host is not None:
                    kept = [(name, value) for name, value in headers if name.lower() != b"host"]
                    scope["headers"] = [*kept, (b"host", new_host.encode())]
        await self.app(scope, receive, send)
