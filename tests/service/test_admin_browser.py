"""The admin page in a real headless browser: Debian's chromium, driven by Playwright.

Playwright's own browser download is never used: the test launches the system's chromium
(``scripts/_install.sh`` installs it), so it runs offline.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from liveserver import Server
from playwright.sync_api import Browser, Page, expect, sync_playwright

from helpers import ADMIN_KEY

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "build" / "screenshots" / "admin.png"
"""Where the run leaves its screenshot (the README's docs/admin.png is a copy of one)."""


def chromium_path() -> str:
    """The system chromium; its absence is an install problem, reported as a failure."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "no chromium on PATH: scripts/_install.sh installs it (apt-get install chromium)"
        )
    return found


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless chromium for this test."""
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def live(redis_url: str) -> Iterator[Server]:
    """The service on a real port, on the test Redis."""
    server = Server(redis_url)
    yield server
    server.close()


def log_in(page: Page, base: str) -> None:
    page.goto(f"{base}/admin")
    page.fill("#key", ADMIN_KEY)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#dashboard")).to_be_visible()


def test_admin_page_log_in_watch_and_revoke(browser: Browser, live: Server) -> None:
    """Log in with the key, see the session count follow a login made through the API, revoke
    that session from the page, and find the user's next request refused."""
    page = browser.new_page(viewport={"width": 1200, "height": 1100})
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    log_in(page, live.base)
    expect(page.locator("#sessions-total")).to_have_text("0")
    expect(page.locator("#redis-status")).to_have_text("healthy")

    cookie = live.login("alice", agent="iPhone")
    live.login("bob", agent="Firefox on Linux")
    expect(page.locator("#sessions-total")).to_have_text("2")
    expect(page.locator("#online-users")).to_have_text("2")

    page.fill("#user-id", "alice")
    page.click("#user-form button[type=submit]")
    row = page.locator("#user-sessions tbody tr")
    expect(row).to_have_count(1)
    expect(row.first).to_contain_text("iPhone")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    row.first.locator("button.revoke").click()
    expect(page.locator("#user-message")).to_have_text("alice has no live sessions")
    expect(page.locator("#sessions-total")).to_have_text("1")
    me = httpx.get(f"{live.base}/api/auth/me", headers={"cookie": f"session={cookie}"})
    assert me.status_code == 401
    assert failed == []  # every asset came from the service


def test_wrong_key_and_logout(browser: Browser, live: Server) -> None:
    """A wrong key is refused on the page; logging out shows the login form again, and the
    cookie is never readable by the page's scripts."""
    page = browser.new_page()
    page.goto(f"{live.base}/admin")
    page.fill("#key", "not-the-admin-key-0123")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("the admin key is not valid")
    log_in(page, live.base)
    assert page.evaluate("document.cookie") == ""  # HttpOnly
    page.click("#logout")
    expect(page.locator("#login")).to_be_visible()
    assert httpx.get(f"{live.base}/api/admin/overview").status_code == 401


def test_api_docs_render_offline(browser: Browser, live: Server) -> None:
    """/docs renders the service's operations with Swagger UI served by the service itself."""
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live.base}/docs")
    overview = page.locator('.opblock-summary-path[data-path="/api/admin/overview"]')
    expect(overview).to_be_visible()
    assert all(url.startswith(live.base) for url in requested), requested
