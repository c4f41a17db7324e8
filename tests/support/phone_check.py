"""Headless Chromium at phone size (375 px) on an admin page; prints one JSON line of what it saw.

Usage: python tests/support/phone_check.py http://127.0.0.1:PORT
Logs in through the test-only route /_test/admin-login, opens /admin/ and an action's
confirmation page, and reports the page widths (no horizontal overflow means width <= 375).
"""

from __future__ import annotations

import json
import sys

from browser_walk import CHROMIUM_ARGS
from playwright.sync_api import sync_playwright

WIDTH = 375


def width(page) -> int:
    """The laid-out width of the loaded page (wider than the viewport means sideways scrolling)."""
    page.wait_for_load_state("load")
    return page.evaluate("document.documentElement.scrollWidth")


def check(base_url: str) -> dict:
    report = {"ok": False}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 740}, is_mobile=True)
            page.set_default_timeout(15000)
            page.goto(base_url + "/_test/admin-login")  # a test-only route of the app under test
            page.goto(base_url + "/admin/")
            page.wait_for_url("**/admin/health")
            report["landed_on"] = page.url.removeprefix(base_url)
            report["health_width"] = width(page)
            report["status_class"] = page.locator(".health-score").get_attribute("class")
            report["logout_button"] = page.get_by_role("button", name="Log out").count()
            page.get_by_role("link", name="Reset error counters…").click()
            page.wait_for_url("**/admin/health/confirm?action=reset_errors")
            report["confirm_width"] = width(page)
            page.get_by_role("button", name="Yes: Reset error counters").click()
            page.wait_for_url("**/admin/health?done=*")
            report["after_confirm"] = page.url.removeprefix(base_url)
            page.get_by_role("button", name="Log out").click()
            page.wait_for_url("**/admin/login")
            report["after_logout"] = page.url.removeprefix(base_url)
            report["ok"] = True
        finally:
            browser.close()
    return report


if __name__ == "__main__":
    try:
        result = check(sys.argv[1].rstrip("/"))
    except Exception as exc:  # noqa: BLE001 - reported as JSON to the test
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    sys.exit(0 if result.get("ok") else 1)
