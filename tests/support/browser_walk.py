"""Headless Chromium walk through the quiz (run un-patched in a subprocess); prints one JSON line.

Usage: python tests/support/browser_walk.py http://127.0.0.1:PORT
Takes the quiz with the keyboard and mouse, sees a result, leaves an email, pays in test mode, sees
the receipt and opens the full report; then opens the links in a fresh browser, which shows no report. Exit status 0 with {"ok": true, ...} on success.
"""

from __future__ import annotations

import json
import re
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PROGRESS = re.compile(r"Question (\d+) of (\d+)")


def walk(base_url: str) -> dict:
    report = {"ok": False, "steps": [], "questions": 0}
    started = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(java_script_enabled=False, viewport={"width": 390, "height": 844})
            page.set_default_timeout(15000)
            page.goto(base_url + "/")
            page.get_by_role("button", name="Start the quiz").click()
            report["steps"].append("landing")
            seen = []
            while "/q/" in page.url:
                progress = PROGRESS.search(page.locator(".progress-label").inner_text())
                seen.append(int(progress.group(1)))
                report["total"] = int(progress.group(2))
                # Keyboard first for the first question (focus order), the mouse for the rest.
                if len(seen) == 1:
                    page.locator("#choice-0").focus()
                    page.keyboard.press("Space")
                else:
                    page.locator("label").nth(len(seen) % 3).click()
                page.get_by_role("button", name=re.compile("Next|Review answers")).click()
            report["questions"] = len(seen)
            report["progress_in_order"] = seen == list(range(1, len(seen) + 1))
            report["steps"].append("answered")
            page.get_by_role("button", name="See my result").click()
            report["result_title"] = page.locator("h1").first.inner_text()
            report["has_analysis"] = page.locator("#ai-analysis").count() == 1
            report["result_url"] = page.url
            report["steps"].append("result")
            page.get_by_label("Email address (optional)").fill("walker@example.org")
            page.get_by_role("button", name="Send it to me").click()
            report["email_thanks"] = page.get_by_text("we have sent a confirmation link").count() == 1
            report["steps"].append("email")
            page.get_by_role("button", name="Unlock the full report").click()
            page.get_by_label("Email for the receipt").fill("walker@example.org")
            page.get_by_role("button", name="Pay (test mode)").click()
            report["steps"].append("paid")
            report["receipt_title"] = page.locator("h1").first.inner_text()
            report["receipt_url"] = page.url
            report["steps"].append("receipt")
            page.get_by_role("link", name="Open your full report").click()
            report["report_title"] = page.locator("h1").first.inner_text()
            report["report_url"] = page.url
            report["models_in_report"] = page.locator(".report-model").count()
            report["steps"].append("report")
            # The share link in a fresh browser (no cookies): the free result, never the report.
            fresh = browser.new_context(java_script_enabled=False).new_page()
            fresh.set_default_timeout(15000)
            denied = fresh.goto(report["report_url"])
            report["fresh_report_status"] = denied.status
            report["fresh_report_title"] = fresh.locator("h1").first.inner_text()
            fresh.goto(report["result_url"])
            body = fresh.locator("main").inner_text()
            report["fresh_share_shows_report"] = "Your answers" in body or "Open the full report" in body
            report["fresh_share_offers_quiz"] = fresh.get_by_role("link", name="Take the quiz").count() == 1
            report["steps"].append("fresh-browser")
            report["ok"] = True
        finally:
            browser.close()
    report["duration_s"] = round(time.monotonic() - started, 3)
    return report


def main() -> int:
    try:
        result = walk(sys.argv[1].rstrip("/"))
    except Exception as exc:  # noqa: BLE001 - any failure is reported as JSON to the test
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
