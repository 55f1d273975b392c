"""The docs page in a real browser: Debian's headless Chromium, driven by Playwright, with every
request to another host refused and recorded.

The page must render every operation of the app's OpenAPI 3.1 document, show no error, load
nothing from outside, and a "Try it out" of an authenticated operation must reach the running
API and get its real 200. A screenshot is kept in tests/.artifacts/ (git-ignored) to look at.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, Request, Route, async_playwright

from tests.support import local_http
from tests.support.databases import IN_CI, ServerPool
from tests.support.servers import ApiServer

ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts"
CHROMIUM = os.environ.get("TODO_TEST_CHROMIUM", "/usr/bin/chromium")
OPERATION_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
RENDER_SECONDS = 20


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        reason = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; make test does)"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: a missing browser is a failure)")
        pytest.skip(reason)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Root in a container has no user namespaces for Chromium's sandbox.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="module")
def docs_api(servers: ServerPool) -> ApiServer:
    return servers.get("postgres")


class Visit:
    """One page load: the requests it made, those refused for leaving the API's origin, and the
    errors the page reported."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.requested: list[str] = []
        self.refused: list[str] = []
        self.errors: list[str] = []

    @classmethod
    async def start(cls, page: Page, origin: str) -> Visit:
        visit = cls(page, origin)
        await page.route("**/*", visit._only_the_api)
        visit._listen()
        return visit

    def _listen(self) -> None:
        page = self.page
        page.on("console", lambda message: self._console(message.type, message.text))
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("requestfailed", self._failed)

    async def _only_the_api(self, route: Route, request: Request) -> None:
        self.requested.append(request.url)
        url = urlsplit(request.url)
        if f"{url.scheme}://{url.netloc}" == self.origin:
            await route.continue_()
        else:
            self.refused.append(request.url)
            await route.abort("blockedbyclient")

    def _console(self, kind: str, text: str) -> None:
        if kind in ("error", "warning"):
            self.errors.append(f"console {kind}: {text}")

    def _failed(self, request: Request) -> None:
        if request.url not in self.refused:
            self.errors.append(f"request failed: {request.url} ({request.failure})")


def _operations(api: ApiServer) -> list[tuple[str, str]]:
    spec = local_http.get(f"{api.url}/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.1")
    return [
        (method, path)
        for path, item in spec["paths"].items()
        for method in item
        if method in OPERATION_METHODS
    ]


async def _shown_operations(page: Page) -> list[tuple[str, str]]:
    shown = await page.eval_on_selector_all(
        ".opblock",
        """blocks => blocks.map(block => [
            block.querySelector('.opblock-summary-method').textContent.trim().toLowerCase(),
            block.querySelector('.opblock-summary-path').getAttribute('data-path'),
        ])""",
    )
    return [(method, path) for method, path in shown]


async def test_the_docs_page_renders_every_operation_and_loads_nothing_from_outside(
    browser: Browser, docs_api: ApiServer
) -> None:
    operations = _operations(docs_api)
    page = await browser.new_page(viewport={"width": 1280, "height": 2400})
    visit = await Visit.start(page, docs_api.url)
    try:
        await page.goto(f"{docs_api.url}/docs", wait_until="networkidle")
        last = page.locator(".opblock").nth(len(operations) - 1)
        await last.wait_for(timeout=RENDER_SECONDS * 1000)
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "docs-page.png"), full_page=True)
        shown = await _shown_operations(page)
        page_text = await page.inner_text("body")
        error_panels = await page.locator(".errors-wrapper, .loading-container .errors").count()
    finally:
        await page.close()

    assert sorted(shown) == sorted(operations)
    assert "Unable to render" not in page_text
    assert error_panels == 0
    assert visit.refused == []
    assert all(url.startswith(docs_api.url) for url in visit.requested)
    assert visit.errors == []


async def test_try_it_out_with_basic_credentials_gets_a_real_200(
    browser: Browser, docs_api: ApiServer
) -> None:
    name, password = await asyncio.to_thread(docs_api.add_user)
    with docs_api.client(auth=(name, password)) as http:
        created = http.post("/api/v1.0/todos/", json={"name": "from", "task": "the browser test"})
        assert created.status_code == 201
    page = await browser.new_page(viewport={"width": 1280, "height": 1600})
    visit = await Visit.start(page, docs_api.url)
    try:
        await page.goto(f"{docs_api.url}/docs", wait_until="networkidle")
        await page.wait_for_selector(".opblock", timeout=RENDER_SECONDS * 1000)

        await page.click("button.authorize")
        dialog = page.locator(".modal-ux")
        basic = dialog.locator(".auth-container").filter(has_text="basic")
        await basic.locator("input[type=text]").fill(name)
        await basic.locator("input[type=password]").fill(password)
        await basic.locator("button.authorize").click()
        await dialog.locator("button.btn-done").click()

        listing = page.locator(".opblock-get").filter(
            has=page.locator('.opblock-summary-path[data-path="/api/v1.0/todos/"]')
        )
        await listing.locator(".opblock-summary").first.click()
        await listing.locator("button.try-out__btn").click()
        async with page.expect_response(
            lambda response: response.url.startswith(f"{docs_api.url}/api/v1.0/todos/")
        ) as answered:
            await listing.locator("button.execute").click()
        response = await answered.value
        sent_authorization = (await response.request.all_headers()).get("authorization", "")
        status = listing.locator(".live-responses-table .response .response-col_status").first
        await status.wait_for(timeout=RENDER_SECONDS * 1000)
        shown_status = (await status.inner_text()).strip()
        shown_body = await listing.locator(".live-responses-table .microlight").first.inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "docs-try-it-out.png"), full_page=True)
    finally:
        await page.close()

    assert response.status == 200
    assert sent_authorization.startswith("Basic ")
    assert shown_status.startswith("200")
    assert created.headers["Location"] in shown_body
    assert visit.refused == []
    assert visit.errors == []
