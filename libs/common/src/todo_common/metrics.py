"""Prometheus metrics that stay correct when a service runs several processes.

Every service runs prometheus-client in multiprocess mode: `prepare_multiprocess_dir()` must run in
the parent before any worker process starts (and before prometheus_client is imported), and it
empties the folder, because files left by dead processes would keep reporting their old values.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir(service: str) -> Path:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty folder (a fresh temp one if unset)."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    else:
        folder = Path(tempfile.mkdtemp(prefix=f"todo-{service}-metrics-"))
        os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def render_metrics() -> tuple[bytes, str]:
    """The exposition text for this service, summed over all of its processes."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    if MULTIPROC_ENV in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
