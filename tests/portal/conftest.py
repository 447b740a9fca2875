"""The portal in a real browser: Debian's Chromium driven by Playwright (no downloaded
browser), against the gateway under uvicorn with the session's Azurite, Key Vault double
and echo upstream, and a node oidc-provider whose redirect URI is this gateway's own
callback (so the browser completes consent end to end).

The browser may reach loopback only: every other request is aborted and recorded, and
a test fails if there was one.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from playwright import sync_api as playwright_sync

from functions.app import create_app
from functions.devtools.processes import free_port, stop_process
from functions.portal import routes as portal_routes
from functions.settings import Settings
from tests.conftest import GatewayUnderTest
from tests.fixtures.oidc import OidcServer, start_oidc_server
from tests.servers import ThreadedServer

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
# Screenshots of the main pages, kept as test artifacts (gitignored).
SCREENSHOTS = REPO / ".localdata" / "portal-screenshots"
AXE_SOURCE = lru_cache(maxsize=1)(lambda: AXE.read_text("utf-8") + "\n;undefined")
PAGES_UNDER_TEST = tuple(f"/portal/{name}.html" for name in sorted(portal_routes.PAGES)) + (
    "/portal/",
)
LOOPBACK = re.compile(r"^(https?|wss?)://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/")


@dataclass
class Portal:
    gateway: GatewayUnderTest
    oidc: OidcServer
    return_origin: str

    @property
    def url(self) -> str:
        return self.gateway.url


@pytest.fixture(scope="session")
def portal_oidc_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def portal_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def portal_oidc(portal_port: int) -> Iterator[OidcServer]:
    with tempfile.TemporaryDirectory(prefix="portal-oidc-") as directory:
        callback = f"http://127.0.0.1:{portal_port}/api/oauth/callback"
        server = start_oidc_server(Path(directory), (callback,))
        try:
            yield server
        finally:
            stop_process(server.process)


@pytest.fixture(scope="session")
def portal(
    make_settings: Callable[..., Settings],
    dev_key: str,
    portal_port: int,
    portal_oidc: OidcServer,
    echo: ThreadedServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Portal]:
    # Upstream TLS must trust this OIDC server's CA too (the token endpoint).
    base = make_settings()
    bundle = tmp_path_factory.mktemp("portal-ca") / "ca.pem"
    assert base.upstream_ca_file is not None
    bundle.write_text(
        Path(base.upstream_ca_file).read_text() + Path(portal_oidc.ca_file).read_text()
    )
    settings = make_settings(
        public_base_url=f"http://127.0.0.1:{portal_port}",
        connect_return_origins=(echo.url,),
        upstream_ca_file=str(bundle),
    )
    server = ThreadedServer(create_app(settings), port=portal_port).start()
    try:
        yield Portal(GatewayUnderTest(server, settings, dev_key), portal_oidc, echo.url)
    finally:
        server.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@dataclass
class Browsing:
    """One browser context (a fresh tab session) with its console errors and the
    requests it tried to send off the machine."""

    page: Any
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.base_url + path)

    def sign_in(self, user: str = "alice", *, admin: bool = False) -> None:
        self.goto("/portal/signin.html")
        if admin:
            self.page.get_by_role("button", name="gateway administrator").click()
        elif user in ("alice", "bob"):
            self.page.get_by_role("button", name=f"Sign in as {user}").click()
        else:
            self.page.get_by_label("Or any other user name").fill(user)
            self.page.get_by_role("button", name="Sign in", exact=True).click()
        self.page.wait_for_url(re.compile(r".*/portal/(index\.html)?(\?.*)?$"))

    def axe(self) -> list[dict[str, Any]]:
        """Serious and critical axe-core violations on the current page."""
        # Not add_script_tag: the portal's CSP refuses inline scripts, rightly. Evaluating
        # through the DevTools protocol is not subject to the page's CSP.
        if not self.page.evaluate("typeof axe !== 'undefined'"):
            self.page.evaluate(AXE_SOURCE())
        result = self.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        return [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]][:3]}
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def browse(browser: Any, portal: Portal) -> Iterator[Callable[[], Browsing]]:
    contexts: list[Any] = []
    sessions: list[Browsing] = []

    def open_context() -> Browsing:
        context = browser.new_context(
            ignore_https_errors=True, viewport={"width": 1100, "height": 800}
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        session = Browsing(page, portal.url)

        def guard(route: Any) -> None:
            if LOOPBACK.match(route.request.url) or route.request.url.startswith(
                ("blob:", "data:")
            ):
                route.continue_()
            else:
                # Never leaves the machine. Only the portal's own pages must not try
                # (the OIDC test server's login page imports a web font).
                try:
                    from_portal = route.request.frame.url.startswith(portal.url)
                except playwright_sync.Error:  # requests without a frame
                    from_portal = True
                if from_portal:
                    session.blocked.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page.on(
            "console",
            lambda message: (
                session.console_errors.append(message.text) if message.type == "error" else None
            ),
        )
        sessions.append(session)
        return session

    yield open_context
    for context in contexts:
        context.close()
    for session in sessions:
        assert not session.blocked, f"the page tried to leave the machine: {session.blocked}"
