"""The API docs page: Swagger UI 5 served entirely by the app (no CDN, no online validator), so it
works offline and renders the OpenAPI 3.1 document the app serves.

The assets come from the `dist` folder of the `flask-swagger-ui` wheel (pinned in
services/api/pyproject.toml and uv.lock; Swagger UI is Apache-2.0, the wheel MIT): a current
Swagger UI build from PyPI. Only its files are used, never its Flask blueprint, so the package is
located without being imported. (swagger-ui-bundle, used before, ships Swagger UI 4.15, which
refuses OpenAPI 3.1.)

Only the files the page loads are served: the package also ships Swagger's demo page and an
initializer pointing at the petstore. The page runs no inline script (its initializer is a file
of ours), so its Content-Security-Policy can refuse inline and foreign scripts; it may not be
framed, and no response here may be content-sniffed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from quart import Blueprint, Response, send_from_directory, url_for
from quart_schema import hide
from werkzeug.exceptions import NotFound

blueprint = Blueprint("docs", __name__, url_prefix="/docs")


def _swagger_ui_dist() -> Path:
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("flask-swagger-ui (Swagger UI's files) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


ASSETS = _swagger_ui_dist()
# The Swagger UI files the page loads; nothing else from the package is served.
SWAGGER_FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js"})
INITIALIZER = "todo-docs.js"

# Swagger UI sets style attributes (hence 'unsafe-inline' for styles only) and draws its icons
# from data: URIs; "Try it out" calls this origin.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>todo API</title>
  <link rel="stylesheet" href="{css}">
</head>
<body>
  <div id="swagger-ui" data-spec="{spec}"></div>
  <script src="{js}"></script>
  <script src="{initializer}"></script>
</body>
</html>
"""

# Reads the spec's URL from the page, so this file is the same for every deployment.
_INITIALIZER_JS = """"use strict";
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null
  });
});
"""


@blueprint.after_request
async def _protect(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@blueprint.get("")
@hide
async def docs_page() -> Response:
    page = _PAGE.format(
        css=url_for("docs.asset", filename="swagger-ui.css"),
        js=url_for("docs.asset", filename="swagger-ui-bundle.js"),
        initializer=url_for("docs.asset", filename=INITIALIZER),
        spec=url_for("openapi"),
    )
    return Response(page, content_type="text/html; charset=utf-8")


@blueprint.get("/assets/<path:filename>")
@hide
async def asset(filename: str) -> Response:
    if filename == INITIALIZER:
        return Response(_INITIALIZER_JS, content_type="text/javascript; charset=utf-8")
    if filename not in SWAGGER_FILES:
        raise NotFound()
    return await send_from_directory(ASSETS, filename)
