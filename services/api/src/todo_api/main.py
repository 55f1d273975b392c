"""`todo-api`: serve the app with hypercorn (uvloop), configured by the environment.

One worker, the cluster's way, is hypercorn's public `serve()` in this process. SIGTERM (or
Ctrl-C) starts a graceful shutdown: the listening socket closes at once (new connections are
refused), requests in flight run to completion for up to TODO_GRACEFUL_TIMEOUT seconds, and every
response sent meanwhile says `Connection: close`, so a keep-alive client opens a new connection
for its next request (and is refused) instead of reusing one about to close.

With `--workers N` a small supervisor of our own shares the listening sockets with N processes,
each running that same `serve()`, and passes signals on to them (hypercorn's own multi-worker
`run()` terminates the other workers as soon as the first has drained, cutting their requests
short). A worker whose supervisor dies drains and exits as if it had been sent SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from hypercorn.config import Config, Sockets
    from hypercorn.typing import (
        ASGIFramework,
        ASGIReceiveCallable,
        ASGIReceiveEvent,
        ASGISendCallable,
        ASGISendEvent,
        Scope,
    )

from todo_common.service import start_service


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-api", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--bind", default="127.0.0.1:5000", metavar="HOST:PORT")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes to serve with; in a cluster keep 1 per pod and scale with replicas",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.workers < 1:
        raise SystemExit("todo-api: --workers must be at least 1")
    settings = start_service("api")  # before any worker starts, and before prometheus_client

    from hypercorn.config import Config

    config = Config()
    config.bind = [args.bind]
    config.workers = args.workers
    config.graceful_timeout = settings.graceful_timeout
    config.accesslog = None  # the app logs each request itself, with its request id
    config.errorlog = logging.getLogger("hypercorn.error")
    scheme_host = args.bind if "://" in args.bind else f"http://{args.bind}"
    logging.getLogger("todo_api").info(
        "todo-api serving on %s (%d worker(s), database %s)",
        scheme_host,
        args.workers,
        settings.database_url.split("://", 1)[0],
    )
    try:
        exit_code = serve(config) if args.workers == 1 else supervise(config)
    except OSError as error:
        print(f"todo-api: cannot serve on {args.bind}: {error.strerror or error}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(exit_code)


# hypercorn waits for the connections it knew of when it closed the listener; one accepted in that
# same loop turn is not among them. The app's shutdown gives such a connection's request this long
# to reach the app before deciding that nothing is in flight.
LATE_REQUEST_GRACE = 0.05
# After the last request returns, its response's final bytes still have to leave the process.
LAST_BYTES_GRACE = 0.05


SHUTTING_DOWN_MESSAGE = "the server is shutting down; send this again on a new connection"


def _connection(scope: Scope, send: ASGISendCallable) -> object:
    """What tells the connection a request came on from any other: hypercorn's per-connection
    task group, held by the stream whose `send` the app gets. Else the client's address and port,
    which the kernel may hand to a new connection soon after (within a second on loopback)."""
    group = getattr(getattr(send, "__self__", None), "task_group", None)
    return group if group is not None else scope.get("client")


class Draining:
    """ASGI wrapper for a graceful shutdown: once it has begun, responses carry `Connection:
    close`, and the app's own shutdown (closing the database and Redis) waits, up to the graceful
    timeout, until no request is in the app.

    A request that arrives after the drain began on a connection that already served one came
    on a keep-alive connection that was idle when the drain began, which hypercorn is closing:
    its answer would never reach the client. It is refused (503, `Connection: close`) without
    reaching the app, so a client that sees its connection go knows nothing was done (a POST
    created nothing) and may send it again. A new connection's first request is served."""

    def __init__(
        self, app: ASGIFramework, graceful_timeout: float, keep_alive_timeout: float
    ) -> None:
        self.app = app
        self.graceful_timeout = graceful_timeout
        self.keep_alive_timeout = keep_alive_timeout
        self.draining_since: float | None = None
        self.in_flight = 0
        self._idle = asyncio.Event()  # set whenever no request is in the app
        self._idle.set()
        # Each connection that had a request (see `_connection`), and when its last one ended.
        self._served: dict[object, float] = {}
        self._prune_at = 1024

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def start_draining(self) -> None:
        self.draining_since = time.monotonic()

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._shutting_down_last(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: ASGISendEvent) -> None:
            if self.draining and message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = cast("ASGISendEvent", {**message, "headers": headers})
            await send(message)

        connection = _connection(scope, send)
        if self.draining and self._served_before(connection):
            from todo_api.errors import error_reply  # the app's modules load after start-up
            from todo_api.replies import send_reply

            reply = error_reply(503, SHUTTING_DOWN_MESSAGE, {"Retry-After": "0"})
            await send_reply(reply, send_closing)
            return
        self.in_flight += 1
        self._idle.clear()
        try:
            await self.app(scope, receive, send_closing)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()
            if connection is not None:
                self._note_served(connection)

    def _served_before(self, connection: object) -> bool:
        ended = self._served.get(connection)
        # Idle longer than the keep-alive timeout, hypercorn closed it: the port is another's.
        return ended is not None and time.monotonic() - ended < self.keep_alive_timeout + 1

    def _note_served(self, connection: object) -> None:
        now = time.monotonic()
        self._served[connection] = now
        if len(self._served) > self._prune_at:
            horizon = now - self.keep_alive_timeout - 1
            self._served = {c: t for c, t in self._served.items() if t >= horizon}
            self._prune_at = max(1024, 2 * len(self._served))

    def _shutting_down_last(self, receive: ASGIReceiveCallable) -> ASGIReceiveCallable:
        async def receive_after_requests() -> ASGIReceiveEvent:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self._requests_done()
            return message

        return receive_after_requests

    async def _requests_done(self) -> None:
        """Return once no request is in the app, or at the graceful deadline."""
        deadline = (self.draining_since or time.monotonic()) + self.graceful_timeout
        await asyncio.sleep(LATE_REQUEST_GRACE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(LAST_BYTES_GRACE)


def serve(config: Config, supervisor_gone: int | None = None) -> int:
    """Serve with hypercorn's `serve()` until SIGTERM or SIGINT, then drain. `supervisor_gone`
    is a file descriptor that turns readable once the supervisor has died: drain then too."""
    from todo_api.asgi import app

    wrapped = Draining(app, config.graceful_timeout, config.keep_alive_timeout)

    async def serve_until_stopped() -> None:
        from hypercorn.asyncio import serve as hypercorn_serve

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        if supervisor_gone is not None:
            loop.add_reader(supervisor_gone, stop.set)

        async def drain() -> None:
            await stop.wait()
            if supervisor_gone is not None:
                loop.remove_reader(supervisor_gone)  # end-of-file stays readable: stop asking
            wrapped.start_draining()

        await hypercorn_serve(wrapped, config, shutdown_trigger=drain, mode="asgi")

    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_until_stopped())
    return 0


def serve_as_worker(config: Config, sockets: Sockets) -> int:
    """One of `supervise()`'s processes: serve the supervisor's listening sockets until told to
    stop, or until the supervisor is gone however it died (SIGKILL included)."""
    signal.signal(signal.SIGTERM, _exit_before_serving)  # until the loop's handlers take over
    signal.signal(signal.SIGINT, _exit_before_serving)
    config.workers = 1  # this process serves alone, as hypercorn's serve() expects
    # hypercorn adopts each socket by its file descriptor; detached, our object will not close it.
    config.bind = [f"fd://{sock.detach()}" for sock in sockets.insecure_sockets]
    # The supervisor's end of this pipe closes when it exits, so it reads end-of-file then.
    supervisor = multiprocessing.parent_process()
    assert supervisor is not None, "a worker is started by supervise()"
    return serve(config, supervisor_gone=supervisor.sentinel)


def supervise(config: Config) -> int:
    """`config.workers` processes sharing the listening sockets. SIGTERM or SIGINT is passed on
    to every worker, which then drains to the end, and the supervisor closes its copy of the
    sockets so new connections are refused. A worker that exits unasked stops the rest (exit 1).

    The signal handler only sends signals and closes sockets: nothing in it takes a lock that
    the interrupted main loop could be holding."""
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")
    sockets = config.create_sockets()
    listening = [*sockets.secure_sockets, *sockets.insecure_sockets]
    workers = [
        context.Process(target=serve_as_worker, args=(config, sockets))
        for _ in range(config.workers)
    ]
    stopping = False

    def shut_down(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        for sock in listening:  # the workers close theirs as they drain: then refused
            sock.close()

    signal.signal(signal.SIGINT, shut_down)
    signal.signal(signal.SIGTERM, shut_down)
    for worker in workers:
        worker.start()
    if stopping:  # a signal came while the workers were starting: make sure each got it
        shut_down(signal.SIGTERM, None)
    exit_code = 0
    running = list(workers)
    while running:
        ended = wait([worker.sentinel for worker in running])
        for worker in [worker for worker in running if worker.sentinel in ended]:
            worker.join()
            running.remove(worker)
            if not stopping:
                exit_code = 1
                shut_down(signal.SIGTERM, None)
            elif worker.exitcode:
                exit_code = 1
    return exit_code


def _exit_before_serving(_signum: int, _frame: object) -> None:
    """SIGTERM or SIGINT to a worker before its loop's handlers take over: nothing is served
    yet, so exit cleanly."""
    raise SystemExit(0)
