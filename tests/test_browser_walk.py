"""One headless Chromium walk (JavaScript off) against a real gunicorn: quiz, result, email, pay, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import Gunicorn

WALK = Path(__file__).resolve().parent / "support" / "browser_walk.py"


@pytest.mark.integration
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_browser_walk(pg_conn):
    env = {
        "QUIZAPP_ENV": "test",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "PAYMENT_PROVIDER": "test",
    }
    with Gunicorn("wsgi:app", workers=1, env=env) as server:
        # Playwright's sync API runs its own loop: keep it out of this gevent-patched process.
        done = subprocess.run(
            [sys.executable, str(WALK), server.url],
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("GEVENT")},
        )
        log = server.log_text()
    assert done.stdout, done.stderr[-2000:]
    walk = json.loads(done.stdout.strip().splitlines()[-1])
    assert walk["ok"], (walk, done.stderr[-2000:], log[-2000:])
    print(
        f"[figure] browser walk (quiz, result, email, pay, receipt, report, fresh browser): {walk['duration_s']:.2f} s"
    )
    assert walk["questions"] == walk["total"] >= 12 and walk["progress_in_order"]
    assert walk["has_analysis"] and walk["email_thanks"]
    assert walk["report_title"] == "Your full report" and walk["models_in_report"] >= 8
    assert walk["report_url"].endswith("/report")
    assert walk["steps"][-4:] == ["paid", "receipt", "report", "fresh-browser"]
    assert (
        walk["receipt_title"] == "Thank you: your payment is confirmed"
        and "/pay/receipt/" in walk["receipt_url"]
    )
    assert walk["fresh_report_status"] == 403
    assert walk["fresh_report_title"] == "This full report belongs to its buyer"
    assert not walk["fresh_share_shows_report"] and walk["fresh_share_offers_quiz"]
    with pg_conn.cursor() as cur:
        cur.execute("SELECT count(*), count(paid_at) FROM quiz_attempts")
        assert cur.fetchone() == (1, 1)
        cur.execute("SELECT count(*) FROM email_subscribers")
        assert cur.fetchone() == (1,)
        cur.execute("SELECT kind FROM email_outbox ORDER BY id")
        assert cur.fetchall() == [("confirm",), ("receipt",)]
        cur.execute("SELECT count(*) FROM payments")
        assert cur.fetchone() == (1,)
    assert "Traceback" not in log
