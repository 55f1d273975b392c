"""Operational endpoints for probes and scrapers: /healthz, /readyz, /metrics (not behind auth)."""

from __future__ import annotations

import asyncio

import structlog
from quart import Blueprint, Response, current_app
from quart_schema import document_response, hide

from todo_api.conditional import json_response
from todo_api.errors import database_unavailable_response
from todo_api.openapi import responds_with
from todo_api.resources import database, settings_of
from todo_api.schemas import Health
from todo_common.metrics import render_metrics

blueprint = Blueprint("ops", __name__)
log = structlog.get_logger(__name__)


@blueprint.get("/healthz")
@document_response(Health)
async def healthz() -> Response:
    """The process is alive and serving; says nothing about its dependencies."""
    return json_response(Health(status="ok"))


@blueprint.get("/readyz")
@document_response(Health)
@responds_with(503)
async def readyz() -> Response:
    """Ready to serve: the database answers a query within the configured timeout."""
    try:
        await asyncio.wait_for(
            database(current_app).ping(), timeout=settings_of(current_app).db_timeout
        )
    except Exception as error:
        log.warning("not ready: database unreachable", error=str(error) or type(error).__name__)
        return database_unavailable_response()
    return json_response(Health(status="ready"))


@blueprint.get("/metrics")
@hide
async def metrics() -> Response:
    body, content_type = await asyncio.to_thread(render_metrics)
    return Response(body, content_type=content_type)
