"""The API docs page: Swagger UI served entirely by the app (assets from the installed
swagger-ui-bundle package, no CDN, no online validator), so it works offline."""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory, url_for
from quart_schema import hide
from swagger_ui_bundle import swagger_ui_path

blueprint = Blueprint("docs", __name__, url_prefix="/docs")
ASSETS = Path(str(swagger_ui_path))

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>todo API</title>
  <link rel="stylesheet" href="{css}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{js}"></script>
  <script>
    SwaggerUIBundle({{url: "{spec}", dom_id: "#swagger-ui", deepLinking: true,
                      validatorUrl: null}});
  </script>
</body>
</html>
"""


@blueprint.get("")
@hide
async def docs_page() -> Response:
    page = _PAGE.format(
        css=url_for("docs.asset", filename="swagger-ui.css"),
        js=url_for("docs.asset", filename="swagger-ui-bundle.js"),
        spec=url_for("openapi"),
    )
    return Response(page, content_type="text/html; charset=utf-8")


@blueprint.get("/assets/<path:filename>")
@hide
async def asset(filename: str) -> Response:
    return await send_from_directory(ASSETS, filename)
