"""The docs page: only the Swagger UI files it needs, no inline script, and headers that keep
other sites from framing it and browsers from guessing content types."""

from __future__ import annotations

import re

import pytest

from tests.support.servers import ApiServer

PAGE_ASSETS = re.compile(r'(?:src|href)="([^"]+)"')


def test_docs_page_has_a_strict_content_security_policy(api: ApiServer) -> None:
    with api.client() as http:
        page = http.get("/docs")

    assert page.status_code == 200
    policy = {
        directive.split()[0]: directive.split()[1:]
        for directive in page.headers["Content-Security-Policy"].split(";")
        if directive.strip()
    }
    assert policy["default-src"] == ["'none'"]
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # No inline script: every <script> loads a file of ours.
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == []


def test_every_file_the_page_loads_is_served_with_nosniff(api: ApiServer) -> None:
    with api.client() as http:
        page = http.get("/docs")
        assets = PAGE_ASSETS.findall(page.text)
        assert any(asset.endswith(".js") for asset in assets)
        bodies = {}
        for asset in assets:
            response = http.get(asset)
            assert response.status_code == 200, asset
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            bodies[asset] = response.text
    # The page names the spec; a script of ours (not the bundle) starts Swagger UI with it.
    assert 'data-spec="/openapi.json"' in page.text
    initializers = [
        a
        for a, text in bodies.items()
        if a.endswith(".js") and "swagger-ui" not in a and "SwaggerUIBundle(" in text
    ]
    assert initializers, "no script of ours starts Swagger UI"
    # Swagger UI's own bundle mentions the petstore; what configures it must not.
    assert "petstore" not in page.text
    assert all("petstore" not in bodies[a] for a in initializers)


@pytest.mark.parametrize(
    "name",
    [
        "index.html",
        "swagger-initializer.js",
        "oauth2-redirect.html",
        "index.j2",
        "swagger-ui.js.map",
        "swagger-ui-standalone-preset.js",
        "../swagger-ui-4.15.5/index.html",
        "%2e%2e/index.html",
        "nothing-here.js",
    ],
)
def test_only_the_files_the_page_needs_are_served(api: ApiServer, name: str) -> None:
    with api.client() as http:
        response = http.get(f"/docs/assets/{name}")
    assert response.status_code == 404, name
    assert response.headers["Content-Type"] == "application/json"
    assert "petstore" not in response.text
