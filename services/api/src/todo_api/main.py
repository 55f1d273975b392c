"""`todo-api`: serve the app with hypercorn (uvloop workers), configured by the environment."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from todo_common.logs import configure_logging
from todo_common.metrics import prepare_multiprocess_dir
from todo_common.settings import load_settings

APPLICATION = "todo_api.asgi:app"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-api", description=__doc__)
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
    from hypercorn.run import run

    configure_logging(settings, "api")
    config = Config()
    config.bind = [args.bind]
    config.application_path = APPLICATION
    config.worker_class = "uvloop"
    # One worker runs in this process: signals reach it directly, no supervisor in between.
    config.workers = 0 if args.workers == 1 else args.workers
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
        exit_code = run(config)
    except OSError as error:
        print(f"todo-api: cannot serve on {args.bind}: {error.strerror or error}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(exit_code)


def _exit_before_serving(_signum: int, _frame: object) -> None:
    """SIGTERM before hypercorn installs its own handler: nothing is served yet, exit cleanly."""
    raise SystemExit(0)
