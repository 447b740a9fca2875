"""Every portal page: zero serious or critical axe-core violations, and the portal
works from the keyboard alone."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import expect

from tests.portal.conftest import PAGES_UNDER_TEST, Browsing, Portal


def test_every_page_passes_axe(browse: Callable[[], Browsing], portal: Portal) -> None:
    with portal.gateway.client("ally") as client:
        connector = client.post(
            "/api/connectors",
            json={
                "name": "Accessible API",
                "baseUrl": portal.return_origin,
                "auth": {"type": "basic"},
            },
        ).json()
        connection = client.post(
            f"/api/connectors/{connector['id']}/connections",
            json={"displayName": "a11y", "parameters": {"username": "u", "password": "p"}},
        ).json()
    ids = {
        "connection": f"?id={connection['id']}",
        "connector": f"?id={connector['id']}",
        "new-connection": f"?connector={connector['id']}",
    }
    b = browse()
    b.goto("/portal/signin.html")
    expect(b.page.get_by_role("button", name="Sign in as alice")).to_be_visible()
    assert b.axe() == []
    b.screenshot("signin")
    b.sign_in("ally")
    for path in PAGES_UNDER_TEST:
        name = path.removeprefix("/portal/").removesuffix(".html") or "index"
        if name == "signin":
            continue
        b.goto(path + ids.get(name, ""))
        b.page.wait_for_load_state("networkidle")
        assert b.axe() == [], path
    b.goto("/portal/connectors.html")
    expect(b.page.get_by_role("table")).to_contain_text("Accessible API")
    b.screenshot("connectors")


def test_keyboard_only_sign_in_and_navigation(
    browse: Callable[[], Browsing], portal: Portal
) -> None:
    b = browse()
    b.goto("/portal/signin.html")
    expect(b.page.get_by_role("button", name="Sign in as bob")).to_be_visible()
    # The first Tab reaches the skip link; then on to "Sign in as bob".
    b.page.keyboard.press("Tab")
    assert b.page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(30):
        b.page.keyboard.press("Tab")
        if b.page.evaluate("document.activeElement.textContent") == "Sign in as bob":
            break
    b.page.keyboard.press("Enter")
    b.page.wait_for_url(re.compile(r".*/portal/$"))
    expect(b.page.locator("#who")).to_have_text("Signed in as bob")
    # Navigation links are reachable and work with Enter.
    for _ in range(10):
        b.page.keyboard.press("Tab")
        if b.page.evaluate("document.activeElement.textContent") == "Connectors":
            break
    b.page.keyboard.press("Enter")
    b.page.wait_for_url(re.compile(r".*/portal/connectors\.html$"))
