"""`todo-api`: serve the app with hypercorn (uvloop workers), configured by the environment.

SIGTERM (or Ctrl-C) starts a graceful shutdown: the listening socket closes at once (new
connections are refused), requests in flight run to completion for up to TODO_GRACEFUL_TIMEOUT
seconds, and every response sent meanwhile says `Connection: close`, so a keep-alive client opens
a new connection for its next request (and is refused) instead of reusing one about to close.
With `--workers N` a small supervisor of our own does the same for every worker (hypercorn's
terminates the other workers as soon as the first has drained, cutting their requests short).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

    from hypercorn.config import Config, Sockets
    from hypercorn.typing import (
        ASGIFramework,
        ASGIReceiveCallable,
        ASGISendCallable,
        ASGISendEvent,
        Scope,
    )

from todo_common.logs import configure_logging
from todo_common.metrics import prepare_multiprocess_dir
from todo_common.settings import load_settings


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
    settings = load_settings()  # a bad value exits here with one line, before any worker starts
    signal.signal(signal.SIGTERM, _exit_before_serving)
    prepare_multiprocess_dir("api")  # before prometheus_client is imported anywhere

    from hypercorn.config import Config

    configure_logging(settings, "api")
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


class Draining:
    """ASGI wrapper: once shutdown has begun, responses carry `Connection: close`."""

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app
        self.draining = False

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: ASGISendEvent) -> None:
            if self.draining and message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"connection", b"close")]
                message = cast("ASGISendEvent", {**message, "headers": headers})
            await send(message)

        await self.app(scope, receive, send_closing)


def serve(config: Config, sockets: Sockets | None = None, stop: Event | None = None) -> int:
    """Serve in this process until SIGTERM or SIGINT (alone) or until `stop` is set (one worker of
    several: the supervisor takes the signals), then drain."""
    if stop is not None:  # signals are the supervisor's (Ctrl-C reaches the whole group)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import uvloop
    from hypercorn.asyncio.run import worker_serve
    from hypercorn.utils import check_multiprocess_shutdown_event, wrap_app

    from todo_api.asgi import app

    wrapped = Draining(app)

    async def serve_until_stopped() -> None:
        signalled = asyncio.Event()
        if stop is None:
            for signum in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(signum, signalled.set)

        async def drain() -> None:
            if stop is None:
                await signalled.wait()
            else:
                await check_multiprocess_shutdown_event(stop, asyncio.sleep)
            wrapped.draining = True

        asgi = wrap_app(wrapped, config.wsgi_max_body_size, "asgi")
        await worker_serve(asgi, config, sockets=sockets, shutdown_trigger=drain)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_until_stopped())
    return 0


def supervise(config: Config) -> int:
    """`config.workers` processes sharing the listening sockets. SIGTERM or SIGINT sets `stop`;
    every worker then drains to the end. A worker that exits unasked stops the rest (exit 1)."""
    from multiprocessing import get_context
    from multiprocessing.connection import wait

    context = get_context("spawn")
    stop = context.Event()
    sockets = config.create_sockets()
    listening = [*sockets.secure_sockets, *sockets.insecure_sockets]
    workers = [
        context.Process(target=serve, args=(config, sockets, stop)) for _ in range(config.workers)
    ]
    started = False

    def shut_down(_signum: int, _frame: object) -> None:
        stop.set()
        if started:  # the workers hold their own copies; once they close theirs, refused
            for sock in listening:
                sock.close()

    signal.signal(signal.SIGINT, shut_down)
    signal.signal(signal.SIGTERM, shut_down)
    for worker in workers:
        worker.start()
    started = True
    if stop.is_set():
        shut_down(signal.SIGTERM, None)
    exit_code = 0
    while workers:
        ended = wait([worker.sentinel for worker in workers])
        for worker in [worker for worker in workers if worker.sentinel in ended]:
            worker.join()
            workers.remove(worker)
            if not stop.is_set():
                exit_code = worker.exitcode or 1
                shut_down(signal.SIGTERM, None)
            elif worker.exitcode:
                exit_code = exit_code or worker.exitcode
    return exit_code


def _exit_before_serving(_signum: int, _frame: object) -> None:
    """SIGTERM before serving starts (the loop's or the supervisor's handler takes over then):
    nothing is served yet, so exit cleanly."""
    raise SystemExit(0)
