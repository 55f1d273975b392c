"""The embedded broker: kombu's filesystem transport, made to let a worker stop promptly.

Celery's worker waits for messages in `drain_events(timeout=2.0)` and looks at a shutdown request
only between two such waits, and kombu's filesystem transport polls its folder for the whole
timeout: an idle worker took 2 s and more to begin its warm shutdown after SIGTERM or Ctrl-C.
This transport's wait also ends, between two polls (never with a message in hand), as soon as a
warm or cold shutdown has been requested; Celery then shuts down as usual, finishing any task
it is running. Everything else is kombu's.
"""

from __future__ import annotations

from queue import Empty
from time import monotonic, sleep
from typing import Any

from celery.worker import state as worker_state
from kombu.transport.filesystem import Transport as FilesystemTransport

# What `broker_transport` names for the filesystem broker (see todo_common.celery_app).
FILESYSTEM_TRANSPORT = "todo_common.broker:PromptFilesystemTransport"


def _shutdown_requested() -> bool:
    return worker_state.should_stop is not None or worker_state.should_terminate is not None


class PromptFilesystemTransport(FilesystemTransport):
    def drain_events(self, connection: Any, timeout: Any = None) -> Any:  # type: ignore[override]
        cycle = self.cycle
        assert cycle is not None, "a channel is open while events are drained"
        started = monotonic()
        interval = float(self.polling_interval or 0.1)
        if timeout:
            interval = min(interval, timeout)
        while True:
            try:
                cycle.get(self._deliver, timeout=timeout)  # type: ignore[no-untyped-call]
            except Empty:  # nothing waiting in any queue's folder
                if _shutdown_requested():
                    raise TimeoutError() from None
                if timeout is not None and monotonic() - started >= timeout:
                    raise TimeoutError() from None
                sleep(interval)
            else:
                return
