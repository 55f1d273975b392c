"""A small Redis client for the API: one connection, every caller's command pipelined on it.

Why: through redis-py's asyncio pool, one EVALSHA cost about 120 us of Python per request (the
pool's lock and checkout, a timeout per read, the parser), as much as the rest of a GET on the
fast route. Redis answers a connection's commands in the order they were sent, so here a command
is queued on the shared connection with a future that its reply resolves, in order, and the
commands of one turn of the event loop go out in one write.

What leaves this module: `ReplyError` (Redis answered with an error: a script's error, NOSCRIPT),
`ConnectionError` (no connection, or it was lost with the command in flight) and `TimeoutError`
(no reply in time). A late reply holds up every reply after it, so a timeout closes the
connection: the commands behind it fail at once instead of each waiting out its own timeout, and
the next command connects again. `todo_api.redis_client` translates these, once.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.connection import SSLConnection, parse_url

Reply = bytes | int | list[Any] | None


class ReplyError(Exception):
    """Redis answered the command with an error."""


class _IncompleteError(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


def pack(args: tuple[bytes | str | int | float, ...]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def parse(buffer: bytearray, start: int) -> tuple[Reply | ReplyError, int]:
    """The RESP2 reply at `start` and the offset after it; `_IncompleteError` if it is not all
    there yet."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise _IncompleteError
    kind, line, after = buffer[start], bytes(buffer[start + 1 : end]), end + 2
    if kind == 0x3A:  # ":" integer
        return int(line), after
    if kind == 0x24:  # "$" bulk string
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise _IncompleteError
        return bytes(buffer[after : after + size]), after + size + 2
    if kind == 0x2A:  # "*" array
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse(buffer, after)
            items.append(item)
        return items, after
    if kind == 0x2B:  # "+" simple string (bytes, as redis-py gives it)
        return line, after
    if kind == 0x2D:  # "-" error
        return ReplyError(line.decode(errors="replace")), after
    raise ConnectionError(
        f"Redis sent a reply this client cannot read: {bytes(buffer[start:end])!r}"
    )


class _Pipeline(asyncio.Protocol):
    """One connection: commands written in order, replies handed to their waiters in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[asyncio.Future[Reply]] = deque()
        self.buffer = bytearray()
        self.unsent: list[bytes] = []
        self.lost = False
        self.lost_because: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def send(self, command: bytes, waiter: asyncio.Future[Reply]) -> None:
        if self.lost:
            # Closed before this caller got to it (a caller of `RespClient._connected` resumes
            # a turn or two after the connection was made: the server may have dropped it by
            # then). Unsent, it would only fail when its reply timeout closes it once more.
            waiter.set_exception(self.lost_because or ConnectionError("not connected to Redis"))
            return
        # Written at the end of this turn of the event loop, with every other command sent in
        # it: one system call for many requests (each one costs as much as a command's Python).
        if not self.unsent:
            asyncio.get_running_loop().call_soon(self._write)
        self.unsent.append(command)
        self.waiters.append(waiter)

    def _write(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.write(b"".join(self.unsent))
        self.unsent.clear()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        offset = 0
        try:
            while offset < len(self.buffer):
                reply, offset = parse(self.buffer, offset)
                if not self.waiters:
                    raise ConnectionError(f"Redis sent a reply nobody asked for: {reply!r}")
                waiter = self.waiters.popleft()
                if not waiter.done():  # its caller gave up: the reply is dropped, in its turn
                    if isinstance(reply, ReplyError):
                        waiter.set_exception(reply)
                    else:
                        waiter.set_result(reply)
        except _IncompleteError:
            pass
        except (ConnectionError, ValueError) as error:
            self.close(ConnectionError(f"unreadable reply from Redis: {error}"))
            return
        del self.buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"the connection to Redis was lost ({exc or 'closed'})")
        self._lose(error)
        self._fail_all(error)

    def close(self, error: Exception) -> None:
        """Close at once (a reply is late or unreadable): every command in flight fails."""
        self._lose(error)
        self._fail_all(error)
        if self.transport is not None:
            self.transport.abort()

    def _lose(self, error: Exception) -> None:
        if not self.lost:
            self.lost, self.lost_because = True, error

    def _fail_all(self, error: Exception) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class RespClient:
    """Commands to the Redis at `url` (redis://, rediss://, unix://, as redis-py reads them)."""

    def __init__(self, url: str, *, connect_timeout: float, reply_timeout: float) -> None:
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        # Made once, here: a bad TLS option (or CA file) stops the start, not every request.
        self._ssl = (
            _ssl_context(self._options)
            if self._options.get("connection_class") is SSLConnection
            else None
        )
        self._connect_timeout = connect_timeout
        self._reply_timeout = reply_timeout
        self._pipeline: _Pipeline | None = None
        self._connecting: asyncio.Task[_Pipeline] | None = None

    async def execute(self, *args: bytes | str | int | float) -> Reply:
        pipeline = self._pipeline
        if pipeline is None or pipeline.lost:
            pipeline = await self._connected()
        return await self._ask(pipeline, pack(args))

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._pipeline is not None:
            self._pipeline.close(ConnectionError("the Redis client is closed"))
            self._pipeline = None

    async def _ask(self, pipeline: _Pipeline, command: bytes) -> Reply:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Reply] = loop.create_future()
        pipeline.send(command, waiter)
        timer = loop.call_later(self._reply_timeout, self._expire, pipeline, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def _expire(self, pipeline: _Pipeline, waiter: asyncio.Future[Reply]) -> None:
        if not waiter.done():
            pipeline.close(TimeoutError(f"Redis did not answer in {self._reply_timeout:g}s"))

    async def _connected(self) -> _Pipeline:
        """The live connection; callers arriving while it is made wait for the same attempt.

        The attempt itself makes its connection the client's (`_connect`): were each waiter to
        do it when it resumes, a turn or two later, the callers arriving in between would find
        no live connection and a finished attempt, and start another, whose connection would
        then replace (and leak) this one."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            caller = asyncio.current_task()
            if connecting.cancelled() and (caller is None or not caller.cancelling()):
                # `close()` cancelled the attempt, not this caller.
                raise ConnectionError("the Redis client was closed while connecting") from None
            raise

    async def _connect(self) -> _Pipeline:
        loop = asyncio.get_running_loop()
        options = self._options
        factory: Callable[[], _Pipeline] = _Pipeline
        async with asyncio.timeout(self._connect_timeout):
            if "path" in options:
                _, pipeline = await loop.create_unix_connection(factory, options["path"])
            else:
                _, pipeline = await loop.create_connection(
                    factory,
                    options.get("host", "localhost"),
                    options.get("port", 6379),
                    ssl=self._ssl,
                )
        try:
            if options.get("password") is not None:
                user = options.get("username")
                credentials = (user, options["password"]) if user else (options["password"],)
                await self._ask(pipeline, pack(("AUTH", *credentials)))
            if options.get("db"):
                await self._ask(pipeline, pack(("SELECT", options["db"])))
        except BaseException:
            pipeline.close(ConnectionError("the connection to Redis was not set up"))
            raise
        self._pipeline = pipeline
        return pipeline


_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    """The TLS context redis-py's `SSLConnection` would make of a rediss:// URL's options
    (`ssl_cert_reqs`, `ssl_ca_certs`, `ssl_ca_path`, `ssl_ca_data`, `ssl_check_hostname`,
    `ssl_certfile`, `ssl_keyfile`, `ssl_password`, `ssl_min_version`, `ssl_ciphers`)."""
    reqs = options.get("ssl_cert_reqs", "required")
    if reqs is None:
        reqs = ssl.CERT_NONE
    elif isinstance(reqs, str):
        if reqs not in _CERT_REQS:
            raise ValueError(f"invalid ssl_cert_reqs in the Redis URL: {reqs!r}")
        reqs = _CERT_REQS[reqs]
    context = ssl.create_default_context(
        cafile=options.get("ssl_ca_certs"),
        capath=options.get("ssl_ca_path"),
        cadata=options.get("ssl_ca_data"),
    )
    check_hostname = options.get("ssl_check_hostname", True)
    context.check_hostname = bool(check_hostname) and reqs != ssl.CERT_NONE
    context.verify_mode = reqs
    if options.get("ssl_certfile"):
        context.load_cert_chain(
            options["ssl_certfile"], options.get("ssl_keyfile"), options.get("ssl_password")
        )
    if options.get("ssl_min_version") is not None:
        context.minimum_version = ssl.TLSVersion(options["ssl_min_version"])
    if options.get("ssl_ciphers"):
        context.set_ciphers(options["ssl_ciphers"])
    return context
